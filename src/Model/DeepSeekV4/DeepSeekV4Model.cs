using Mtp.SafeTensors;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Mtp.Model;

#pragma warning disable IDE1006

/// <summary>The main model under <c>model.</c>: <c>embed_tokens</c>, <c>layers</c>, <c>norm</c>, <c>hc_head</c>.</summary>
public sealed class DeepSeekV4Body : nn.Module
{
    readonly Embedding embed_tokens;
    readonly ModuleList<V4Block> layers;
    readonly RmsNorm norm;
    readonly HcHead hc_head;

    /// <summary>Creates the body.</summary>
    public DeepSeekV4Body(DeepSeekV4Config c, ScalarType dtype, Device device) : base("DeepSeekV4Body")
    {
        embed_tokens = new Embedding(c.VocabSize, c.HiddenSize, dtype, device);
        layers = new ModuleList<V4Block>(Enumerable.Range(0, c.NumHiddenLayers).Select(i => new V4Block(c, i, dtype, device)).ToArray());
        norm = new RmsNorm(c.HiddenSize, c.RmsNormEps, dtype, device);
        hc_head = new HcHead(c, device);
        RegisterComponents();
    }

    /// <summary>The token embedding (shared with the MTP depths).</summary>
    public Embedding EmbedTokens => embed_tokens;
    /// <summary>The final norm.</summary>
    public RmsNorm Norm => norm;
    /// <summary>The final stream collapse.</summary>
    public HcHead HcHead => hc_head;
    /// <summary>The layers.</summary>
    public IReadOnlyList<V4Block> Layers => layers.ToList();

    /// <summary>Final hidden streams [B, S, hc, H] (before hc_head and norm).</summary>
    public Tensor Streams(Tensor ids, V4Context ctx, int hcMult)
    {
        var h = embed_tokens.forward(ids).unsqueeze(2).repeat(1, 1, hcMult, 1);
        foreach (var l in layers) h = l.Forward(h, ids, ctx);
        return h;
    }
}

/// <summary>
/// One V4 MTP depth <c>mtp.layers.{k}</c>: <c>e_proj</c> and <c>h_proj</c> (or the legacy fused <c>eh_proj</c> [H, 2H],
/// embedding half first), <c>enorm</c>, <c>hnorm</c>, the block's keys flat under the same prefix, its own
/// <c>hc_head</c> (legacy checkpoints have none: the main model's is used) and <c>final_layernorm</c>; optional
/// <c>embed_tokens</c> / <c>shared_head.head</c> copies.
/// </summary>
public sealed class V4MtpDepth : nn.Module
{
    readonly Linear? e_proj;
    readonly Linear? h_proj;
    readonly Linear? eh_proj;
    readonly RmsNorm enorm;
    readonly RmsNorm hnorm;
    readonly RmsNorm attn_norm;
    readonly V4Attention attn;
    readonly RmsNorm ffn_norm;
    readonly V4Moe mlp;
    readonly Parameter hc_attn_fn;
    readonly Parameter hc_attn_base;
    readonly Parameter hc_attn_scale;
    readonly Parameter hc_ffn_fn;
    readonly Parameter hc_ffn_base;
    readonly Parameter hc_ffn_scale;
    readonly HcHead? hc_head;
    readonly RmsNorm final_layernorm;
    readonly Embedding? embed_tokens;
    readonly SharedHead4? shared_head;
    readonly DeepSeekV4Config _c;

    /// <summary>Creates depth <paramref name="k"/> (0-based).</summary>
    public V4MtpDepth(DeepSeekV4Config c, int k, V4DepthLayout layout, ScalarType dtype, Device device) : base("V4MtpDepth")
    {
        _c = c;
        int layer = c.NumHiddenLayers + k, h = c.HiddenSize;
        if (layout.FusedEhProj) eh_proj = new Linear(2L * h, h, dtype, device);
        else { e_proj = new Linear(h, h, dtype, device); h_proj = new Linear(h, h, dtype, device); }
        enorm = new RmsNorm(h, c.RmsNormEps, dtype, device);
        hnorm = new RmsNorm(h, c.RmsNormEps, dtype, device);
        attn_norm = new RmsNorm(h, c.RmsNormEps, dtype, device);
        attn = new V4Attention(c, c.CompressRatio(layer), dtype, device);
        ffn_norm = new RmsNorm(h, c.RmsNormEps, dtype, device);
        mlp = new V4Moe(c, c.IsHashLayer(layer), dtype, device);
        hc_attn_fn = V4BlockParts.Mix(c, true, device);
        hc_attn_base = V4BlockParts.Mix(c, false, device);
        hc_attn_scale = V4BlockParts.Scale(device);
        hc_ffn_fn = V4BlockParts.Mix(c, true, device);
        hc_ffn_base = V4BlockParts.Mix(c, false, device);
        hc_ffn_scale = V4BlockParts.Scale(device);
        if (layout.OwnHcHead) hc_head = new HcHead(c, device);
        final_layernorm = new RmsNorm(h, c.RmsNormEps, dtype, device);
        if (layout.OwnEmbedding) embed_tokens = new Embedding(c.VocabSize, h, dtype, device);
        if (layout.OwnHead) shared_head = new SharedHead4(c, dtype, device);
        RegisterComponents();
    }

    /// <summary>
    /// h_k = Block(e_proj(enorm(emb(ids_k))) broadcast over the streams + h_proj(hnorm(h_{k-1}))), logits =
    /// head(final_layernorm(hc_head(h_k))). Returns (h_k streams, logits).
    /// </summary>
    public (Tensor Streams, Tensor Logits) Forward(Tensor rolledIds, Tensor hPrev, V4Context ctx, Embedding sharedEmbedding, Linear sharedHead, HcHead sharedHcHead) =>
        MtpDepthStep.Run(Bind(sharedEmbedding, sharedHead, sharedHcHead), rolledIds, hPrev, ctx);

    /// <summary>This depth's parts, with the main model's embedding, head and hc_head where it has no copies of its own.</summary>
    internal IMtpDepth<V4Context> Bind(Embedding sharedEmbedding, Linear sharedHead, HcHead sharedHcHead) =>
        new Parts(this, sharedEmbedding, sharedHead, sharedHcHead);

    // The state passed on is the block's hyper-connection streams [B, S, hc, H]; only the head's input is collapsed.
    sealed class Parts(V4MtpDepth d, Embedding sharedEmbedding, Linear sharedHead, HcHead sharedHcHead) : IMtpDepth<V4Context>
    {
        public bool CarriesNormed => false;
        public Tensor Embed(Tensor rolledIds) => (d.embed_tokens ?? sharedEmbedding).forward(rolledIds);

        public Tensor Fuse(Tensor embedded, Tensor previous)
        {
            int h = d._c.HiddenSize;
            var e = d.enorm.forward(embedded);                                                    // [B, S, H]
            var hn = d.hnorm.forward(previous);                                                   // [B, S, hc, H]
            return d.eh_proj is not null
                ? nn.functional.linear(e, d.eh_proj.Weight.narrow(1, 0, h)).unsqueeze(2).Plus(nn.functional.linear(hn, d.eh_proj.Weight.narrow(1, h, h)))
                : d.e_proj!.forward(e).unsqueeze(2).Plus(d.h_proj!.forward(hn));
        }

        public Tensor Block(Tensor fused, Tensor rolledIds, V4Context ctx) =>
            new V4BlockParts(d.attn_norm, d.attn, d.ffn_norm, d.mlp, d.hc_attn_fn, d.hc_attn_base, d.hc_attn_scale, d.hc_ffn_fn, d.hc_ffn_base, d.hc_ffn_scale)
                .Run(d._c, fused, rolledIds, ctx);

        public Tensor FinalNorm(Tensor blockOutput) => d.final_layernorm.forward((d.hc_head ?? sharedHcHead).forward(blockOutput));
        public Tensor Head(Tensor normed) => (d.shared_head?.Head ?? sharedHead).forward(normed);
    }
}

/// <summary>Optional per-depth head copy: <c>shared_head.head.weight</c>.</summary>
public sealed class SharedHead4 : nn.Module
{
    readonly Linear head;

    /// <summary>Creates the head.</summary>
    public SharedHead4(DeepSeekV4Config c, ScalarType dtype, Device device) : base("SharedHead4")
    {
        head = new Linear(c.HiddenSize, c.VocabSize, dtype, device);
        RegisterComponents();
    }

    /// <summary>The head.</summary>
    public Linear Head => head;
}

/// <summary>Which optional tensors one MTP depth carries.</summary>
/// <param name="FusedEhProj">Legacy spelling: one eh_proj [H, 2H] instead of e_proj / h_proj.</param>
/// <param name="OwnHcHead">The depth has its own hc_head.{fn,base,scale} (V4-Flash: yes; legacy: no).</param>
/// <param name="OwnEmbedding">embed_tokens copy.</param>
/// <param name="OwnHead">shared_head.head copy.</param>
public sealed record V4DepthLayout(bool FusedEhProj = false, bool OwnHcHead = true, bool OwnEmbedding = false, bool OwnHead = false);

/// <summary>
/// DeepSeek-V4 (hyper-connections, sliding-window + compressed attention with sinks, hash/sqrtsoftplus MoE)
/// with D MTP depths. Parameter and buffer names equal the training-layout names: <c>model.*</c>,
/// <c>lm_head.weight</c>, <c>mtp.layers.{k}.*</c>.
/// </summary>
public sealed class DeepSeekV4Model : MtpModel<V4Context>
{
    readonly DeepSeekV4Body model;
    readonly Linear lm_head;
    readonly MtpStack<V4MtpDepth> mtp;

    /// <summary>The validated config.</summary>
    public DeepSeekV4Config Config { get; }
    /// <inheritdoc />
    public override string Family => "deepseek-v4";
    /// <inheritdoc />
    public override int VocabSize => Config.VocabSize;
    /// <inheritdoc />
    public override int NumHiddenLayers => Config.NumHiddenLayers;
    /// <inheritdoc />
    public override int MtpDepthCount => Config.NumNextnPredictLayers;

    /// <summary>hc_* mixing parameters, attn_sink, compressor ape and the router bias stay F32.</summary>
    public override bool KeepsFloat32(string name) => IsFloat32Name(name);

    /// <summary>Whether a V4 training-layout name is kept in F32.</summary>
    public static bool IsFloat32Name(string name)
    {
        string leaf = name[(name.LastIndexOf('.') + 1)..];
        return leaf.StartsWith("hc_", StringComparison.Ordinal) || name.Contains(".hc_head.", StringComparison.Ordinal)
            || leaf == "attn_sink" || leaf == "ape" || name.EndsWith(".gate.bias", StringComparison.Ordinal);
    }

    /// <summary>Creates a zero-initialised model (use <see cref="Load(string, Device, ScalarType)"/> to fill it).</summary>
    public DeepSeekV4Model(DeepSeekV4Config config, ScalarType dtype, Device device, V4DepthLayout[]? depths = null) : base("DeepSeekV4Model", dtype, device)
    {
        Config = config;
        model = new DeepSeekV4Body(config, dtype, device);
        lm_head = new Linear(config.HiddenSize, config.VocabSize, dtype, device);
        mtp = new MtpStack<V4MtpDepth>(Enumerable.Range(0, config.NumNextnPredictLayers).Select(k => new V4MtpDepth(config, k, depths?[k] ?? new V4DepthLayout(), dtype, device)));
        RegisterComponents();
    }

    /// <summary>The main body.</summary>
    public DeepSeekV4Body Body => model;
    /// <summary>The output head.</summary>
    public Linear LmHead => lm_head;
    /// <summary>The MTP depths.</summary>
    public IReadOnlyList<V4MtpDepth> MtpDepths => mtp.Layers;

    /// <summary>
    /// Loads a DeepSeek-V4 training-layout checkpoint strictly. Per depth, the layout (separate e_proj/h_proj or
    /// legacy eh_proj, own hc_head or not, embedding/head copies) is read from the tensor names present.
    /// </summary>
    public static new DeepSeekV4Model Load(string dir, Device device, ScalarType dtype)
    {
        using var src = ModelSource.Open(dir, dtype);
        return Load(src, device, dtype);
    }

    /// <summary>Loads from a tensor source (a training-layout checkpoint, or an HF one converted in memory).</summary>
    public static DeepSeekV4Model Load(ITensorSource ckpt, Device device, ScalarType dtype)
    {
        var cfg = DeepSeekV4Config.FromJson(ModelSource.ConfigOf(ckpt));
        var layouts = Enumerable.Range(0, cfg.NumNextnPredictLayers).Select(k => new V4DepthLayout(
            FusedEhProj: ckpt.Contains($"mtp.layers.{k}.eh_proj.weight"),
            OwnHcHead: ckpt.Contains($"mtp.layers.{k}.hc_head.fn") || !ckpt.Contains($"mtp.layers.{k}.eh_proj.weight"),
            OwnEmbedding: ckpt.Contains($"mtp.layers.{k}.embed_tokens.weight"),
            OwnHead: ckpt.Contains($"mtp.layers.{k}.shared_head.head.weight"))).ToArray();
        DeepSeekV4Model m;
        using (no_grad()) using (P.ForLoading()) m = new DeepSeekV4Model(cfg, dtype, device, layouts);
        return ModelSource.FillOrDispose(m, ckpt);
    }

    /// <summary>Builds the per-forward context (masks, rope tables, compression plans) for a packed batch.</summary>
    public V4Context Context(long[] cu, long rows, long seqLen, Tensor? positions = null) =>
        new(Config, cu, rows, seqLen, positions ?? tensor(Packing.Positions(cu), device: Device).view(rows, seqLen), Device);

    /// <inheritdoc />
    protected override V4Context CreateContext(long[] cu, long rows, long seqLen, Tensor positions) => Context(cu, rows, seqLen, positions);

    /// <summary>The main logits come from the collapsed, normed streams; the first depth reads the streams before hc_head.</summary>
    protected override (Tensor Hidden, Tensor Logits) MainForward(Tensor ids, V4Context ctx)
    {
        var streams = model.Streams(ids, ctx, Config.HcMult);
        return (streams, lm_head.forward(model.Norm.forward(model.HcHead.forward(streams))));
    }

    /// <inheritdoc />
    protected override IMtpDepth<V4Context> DepthAt(int index) => mtp.Layers[index].Bind(model.EmbedTokens, lm_head, model.HcHead);
}
