using Mtp.Adapters;
using Mtp.SafeTensors;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Mtp.Model;

#pragma warning disable IDE1006

/// <summary>
/// DeepSeek-V3 with D MTP depths (also DeepSeek-V3.2, with its <see cref="SparseIndexer"/>, and GLM-4.5: the same model
/// with grouped-query attention, <see cref="Glm45Config"/>). Parameter (and buffer) names equal the training-layout checkpoint names:
/// <c>model.*</c>, <c>lm_head.weight</c>, <c>mtp.layers.{k}.*</c>.
/// </summary>
internal sealed class DeepSeekV3Model : MtpModel<AttentionContext>
{
    readonly DeepSeekV3Body model;
    readonly Linear lm_head;
    readonly MtpStack<MtpDepth> mtp;

    /// <summary>The validated config.</summary>
    public DeepSeekV3Config Config { get; }
    /// <inheritdoc />
    public override string Family => Config.Family.Id;
    /// <inheritdoc />
    public override int VocabSize => Config.VocabSize;
    /// <inheritdoc />
    public override bool KeepsFloat32(string name) =>
        name.EndsWith("e_score_correction_bias", StringComparison.Ordinal) || name.Contains(".self_attn.indexer.k_norm.", StringComparison.Ordinal);
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
