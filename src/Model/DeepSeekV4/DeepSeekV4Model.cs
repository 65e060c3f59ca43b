using Mtp.Adapters;
using Mtp.SafeTensors;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Mtp.Model;

#pragma warning disable IDE1006

/// <summary>
/// DeepSeek-V4 (hyper-connections, sliding-window + compressed attention with sinks, hash/sqrtsoftplus MoE)
/// with D MTP depths. Parameter and buffer names equal the training-layout names: <c>model.*</c>,
/// <c>lm_head.weight</c>, <c>mtp.layers.{k}.*</c>.
/// </summary>
internal sealed class DeepSeekV4Model : MtpModel<V4Context>
{
    readonly DeepSeekV4Body model;
    readonly Linear lm_head;
    readonly MtpStack<V4MtpDepth> mtp;

    /// <summary>The validated config.</summary>
    public DeepSeekV4Config Config { get; }
    /// <inheritdoc />
    public override string Family => FamilyRegistry.DeepSeekV4.Id;
    /// <inheritdoc />
    public override int VocabSize => Config.VocabSize;
    /// <inheritdoc />
    public override int NumHiddenLayers => Config.NumHiddenLayers;
    /// <inheritdoc />
    public override int MtpDepthCount => Config.NumNextnPredictLayers;

    /// <summary>Hyper-connection parameters (attn_hc, ffn_hc, hc_head), the sinks, the compressors' position_bias and the router bias stay F32.</summary>
    public override bool KeepsFloat32(string name) => IsFloat32Name(name);

    /// <summary>Whether a V4 training-layout name is kept in F32.</summary>
    public static bool IsFloat32Name(string name)
    {
        string leaf = name[(name.LastIndexOf('.') + 1)..];
        return name.Contains(".attn_hc.", StringComparison.Ordinal) || name.Contains(".ffn_hc.", StringComparison.Ordinal)
            || name.Contains(".hc_head.", StringComparison.Ordinal)
            || leaf == "sinks" || leaf == "position_bias" || name.EndsWith(".gate.e_score_correction_bias", StringComparison.Ordinal);
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
            OwnHcHead: ckpt.Contains($"mtp.layers.{k}.hc_head.hc_fn") || !ckpt.Contains($"mtp.layers.{k}.eh_proj.weight"),
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
