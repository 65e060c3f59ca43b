using Mtp.SafeTensors;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Mtp.Model;

#pragma warning disable IDE1006

/// <summary>The main model under <c>model.</c>: <c>embed_tokens</c>, <c>layers</c>, <c>norm</c>.</summary>
public sealed class DeepSeekV3Body : nn.Module
{
    readonly Embedding embed_tokens;
    readonly ModuleList<DecoderLayer> layers;
    readonly RmsNorm norm;

    /// <summary>Creates the body.</summary>
    public DeepSeekV3Body(DeepSeekV3Config c, ScalarType dtype, Device device) : base("DeepSeekV3Body")
    {
        embed_tokens = new Embedding(c.VocabSize, c.HiddenSize, dtype, device);
        layers = new ModuleList<DecoderLayer>(Enumerable.Range(0, c.NumHiddenLayers).Select(i => new DecoderLayer(c, c.IsMoeLayer(i), dtype, device)).ToArray());
        norm = new RmsNorm(c.HiddenSize, c.RmsNormEps, dtype, device);
        RegisterComponents();
    }

    /// <summary>The shared token embedding.</summary>
    public Embedding EmbedTokens => embed_tokens;
    /// <summary>The final norm.</summary>
    public RmsNorm Norm => norm;
    /// <summary>The decoder layers.</summary>
    public IReadOnlyList<DecoderLayer> Layers => layers.ToList();

    /// <summary>Last hidden state [B, S, H] BEFORE the final norm (the MTP depths read it after the norm, see <c>DeepSeekV3Model.MainForward</c>).</summary>
    public Tensor Hidden(Tensor ids, AttentionContext ctx)
    {
        var h = embed_tokens.forward(ids);
        foreach (var l in layers) h = l.forward(h, ctx);
        return h;
    }
}

/// <summary>Optional per-depth head copy: <c>shared_head.head.weight</c>.</summary>
public sealed class SharedHead : nn.Module
{
    readonly Linear head;

    /// <summary>Creates the head.</summary>
    public SharedHead(DeepSeekV3Config c, ScalarType dtype, Device device) : base("SharedHead")
    {
        head = new Linear(c.HiddenSize, c.VocabSize, dtype, device);
        RegisterComponents();
    }

    /// <summary>The head.</summary>
    public Linear Head => head;
}

/// <summary>
/// One MTP depth (<c>mtp.layers.{k}</c>): enorm, hnorm, eh_proj [H, 2H] (embedding half first),
/// a full MoE decoder block flattened under the same prefix, final_layernorm. Embedding and head are the
/// main model's unless this depth carries its own copies (embed_tokens / shared_head.head).
/// </summary>
public sealed class MtpDepth : nn.Module
{
    readonly RmsNorm enorm;
    readonly RmsNorm hnorm;
    readonly Linear eh_proj;
    readonly RmsNorm input_layernorm;
    readonly MlaAttention self_attn;
    readonly RmsNorm post_attention_layernorm;
    readonly MoeBlock mlp;
    readonly RmsNorm final_layernorm;
    readonly Embedding? embed_tokens;
    readonly SharedHead? shared_head;

    /// <summary>Creates a depth; the flags add per-depth embedding / head copies.</summary>
    public MtpDepth(DeepSeekV3Config c, bool ownEmbedding, bool ownHead, ScalarType dtype, Device device) : base("MtpDepth")
    {
        enorm = new RmsNorm(c.HiddenSize, c.RmsNormEps, dtype, device);
        hnorm = new RmsNorm(c.HiddenSize, c.RmsNormEps, dtype, device);
        eh_proj = new Linear(2L * c.HiddenSize, c.HiddenSize, dtype, device);
        input_layernorm = new RmsNorm(c.HiddenSize, c.RmsNormEps, dtype, device);
        self_attn = new MlaAttention(c, dtype, device);
        post_attention_layernorm = new RmsNorm(c.HiddenSize, c.RmsNormEps, dtype, device);
        mlp = new MoeBlock(c, dtype, device);
        final_layernorm = new RmsNorm(c.HiddenSize, c.RmsNormEps, dtype, device);
        if (ownEmbedding) embed_tokens = new Embedding(c.VocabSize, c.HiddenSize, dtype, device);
        if (ownHead) shared_head = new SharedHead(c, dtype, device);
        RegisterComponents();
    }

    /// <summary>
    /// h_k = Block(eh_proj(cat(enorm(emb), hnorm(h_prev)))), logits_k = head(final_layernorm(h_k)); returns (h_k, logits_k).
    /// h_prev is the normed main hidden state for the first depth, the previous depth's h_k after that.
    /// </summary>
    public (Tensor Hidden, Tensor Logits) Forward(Tensor rolledIds, Tensor hPrev, AttentionContext ctx, Embedding sharedEmbedding, Linear sharedHead) =>
        MtpDepthStep.Run(Bind(sharedEmbedding, sharedHead), rolledIds, hPrev, ctx);

    /// <summary>This depth's parts, with the main model's embedding and head where it has no copies of its own.</summary>
    internal IMtpDepth<AttentionContext> Bind(Embedding sharedEmbedding, Linear sharedHead) => new Parts(this, sharedEmbedding, sharedHead);

    // The next depth reads the block output, before final_layernorm.
    sealed class Parts(MtpDepth d, Embedding sharedEmbedding, Linear sharedHead) : IMtpDepth<AttentionContext>
    {
        public bool CarriesNormed => false;
        public Tensor Embed(Tensor rolledIds) => (d.embed_tokens ?? sharedEmbedding).forward(rolledIds);
        public Tensor Fuse(Tensor embedded, Tensor previous) => d.eh_proj.forward(cat(new[] { d.enorm.forward(embedded), d.hnorm.forward(previous) }, -1));
        public Tensor Block(Tensor fused, Tensor rolledIds, AttentionContext ctx) =>
            DecoderLayer.Block(d.input_layernorm, d.self_attn, d.post_attention_layernorm, d.mlp, fused, ctx);
        public Tensor FinalNorm(Tensor blockOutput) => d.final_layernorm.forward(blockOutput);
        public Tensor Head(Tensor normed) => (d.shared_head?.Head ?? sharedHead).forward(normed);
    }
}

/// <summary>
/// DeepSeek-V3 with D MTP depths. Parameter (and buffer) names equal the training-layout checkpoint names:
/// <c>model.*</c>, <c>lm_head.weight</c>, <c>mtp.layers.{k}.*</c>.
/// </summary>
public sealed class DeepSeekV3Model : MtpModel<AttentionContext>
{
    readonly DeepSeekV3Body model;
    readonly Linear lm_head;
    readonly MtpStack<MtpDepth> mtp;

    /// <summary>The validated config.</summary>
    public DeepSeekV3Config Config { get; }
    /// <inheritdoc />
    public override string Family => "deepseek-v3";
    /// <inheritdoc />
    public override int VocabSize => Config.VocabSize;
    /// <inheritdoc />
    public override bool KeepsFloat32(string name) => name.EndsWith("e_score_correction_bias", StringComparison.Ordinal);
    /// <inheritdoc />
    public override int NumHiddenLayers => Config.NumHiddenLayers;
    /// <inheritdoc />
    public override int MtpDepthCount => Config.NumNextnPredictLayers;

    /// <summary>Creates a zero-initialised model (use <see cref="Load(string, Device, ScalarType)"/> to fill it).</summary>
    /// <param name="config">Config.</param>
    /// <param name="dtype">Parameter dtype (Float32 or BFloat16).</param>
    /// <param name="device">Device.</param>
    /// <param name="ownEmbedding">Per depth: carries its own embed_tokens copy (null: none do).</param>
    /// <param name="ownHead">Per depth: carries its own shared_head.head copy (null: none do).</param>
    public DeepSeekV3Model(DeepSeekV3Config config, ScalarType dtype, Device device, bool[]? ownEmbedding = null, bool[]? ownHead = null) : base("DeepSeekV3Model", dtype, device)
    {
        Config = config;
        int d = config.NumNextnPredictLayers;
        model = new DeepSeekV3Body(config, dtype, device);
        lm_head = new Linear(config.HiddenSize, config.VocabSize, dtype, device);
        mtp = new MtpStack<MtpDepth>(Enumerable.Range(0, d).Select(k => new MtpDepth(config, ownEmbedding?[k] ?? false, ownHead?[k] ?? false, dtype, device)));
        RegisterComponents();
    }

    /// <summary>The main body.</summary>
    public DeepSeekV3Body Body => model;
    /// <summary>The output head.</summary>
    public Linear LmHead => lm_head;
    /// <summary>The MTP depths.</summary>
    public IReadOnlyList<MtpDepth> MtpDepths => mtp.Layers;

    /// <summary>
    /// Loads a DeepSeek-V3 training-layout checkpoint strictly: every tensor lands in a parameter or buffer,
    /// every parameter is filled, shapes must match exactly. Optional per-depth embed_tokens / shared_head
    /// copies are created when present. All problems are reported in one <see cref="ModelLoadException"/>.
    /// </summary>
    public static new DeepSeekV3Model Load(string dir, Device device, ScalarType dtype)
    {
        using var src = ModelSource.Open(dir, dtype);
        return Load(src, device, dtype);
    }

    /// <summary>Loads from a tensor source (a training-layout checkpoint, or an HF one converted in memory).</summary>
    public static DeepSeekV3Model Load(ITensorSource ckpt, Device device, ScalarType dtype)
    {
        var cfg = DeepSeekV3Config.FromJson(ModelSource.ConfigOf(ckpt));
        int d = cfg.NumNextnPredictLayers;
        var ownEmb = Enumerable.Range(0, d).Select(k => ckpt.Contains($"mtp.layers.{k}.embed_tokens.weight")).ToArray();
        var ownHead = Enumerable.Range(0, d).Select(k => ckpt.Contains($"mtp.layers.{k}.shared_head.head.weight")).ToArray();
        DeepSeekV3Model model;
        using (no_grad()) using (P.ForLoading()) model = new DeepSeekV3Model(cfg, dtype, device, ownEmb, ownHead);
        return ModelSource.FillOrDispose(model, ckpt);
    }

    /// <summary>Builds the mask and rope tables for a batch (positions restart per packed sequence).</summary>
    public AttentionContext Context(long[] cu, long rows, long seqLen, Tensor? positions = null)
    {
        positions ??= tensor(Packing.Positions(cu), device: Device).view(rows, seqLen);
        var (cos, sin) = Rope.CosSin(Config, positions);
        return new AttentionContext(Packing.AttentionMask(cu, rows, seqLen, Device), cos, sin);
    }

    /// <inheritdoc />
    protected override AttentionContext CreateContext(long[] cu, long rows, long seqLen, Tensor positions) => Context(cu, rows, seqLen, positions);

    /// <summary>
    /// Depth 1 reads the main hidden state AFTER the final norm (<c>model.norm</c>), the tensor the main logits are
    /// computed from, as vLLM's and SGLang's DeepSeek MTP and Megatron-Core do (src/Model/README.md); depth k+1 reads
    /// depth k's block output before its final_layernorm (<see cref="MtpDepth.Forward"/>).
    /// </summary>
    protected override (Tensor Hidden, Tensor Logits) MainForward(Tensor ids, AttentionContext ctx)
    {
        var normed = model.Norm.forward(model.Hidden(ids, ctx));
        return (normed, lm_head.forward(normed));
    }

    /// <inheritdoc />
    protected override IMtpDepth<AttentionContext> DepthAt(int index) => mtp.Layers[index].Bind(model.EmbedTokens, lm_head);
}
