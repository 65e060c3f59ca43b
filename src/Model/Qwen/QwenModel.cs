using Mtp.Adapters;
using Mtp.SafeTensors;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Mtp.Model.Qwen;

#pragma warning disable IDE1006

/// <summary>
/// Qwen3.5 (dense or MoE) and Qwen3-Next with their MTP layers, in training layout: <c>model.embed_tokens</c>,
/// <c>model.layers.{i}.*</c>, <c>model.norm</c>, <c>lm_head</c> (absent when tied), <c>mtp.layers.{j}.*</c>.
/// The vision tower (<c>model.visual.*</c>) is not modelled: loading lists it as ignored. Positions are text-only,
/// for which Qwen3.5's interleaved MRoPE is plain 1-D RoPE.
/// </summary>
public sealed class QwenModel : MtpModel<QwenContext>
{
    readonly QwenBody model;
    readonly Linear? lm_head;
    readonly MtpStack<QwenMtpLayer> mtp;

    /// <summary>The validated config.</summary>
    public QwenConfig Config { get; }
    /// <summary>MTP depths (= MTP layers; depth k uses layer k-1).</summary>
    public int Depths { get; }
    /// <summary>Checkpoint tensors the last <see cref="Load(string, Device, ScalarType)"/> ignored (the vision tower).</summary>
    public IReadOnlyList<string> IgnoredTensors { get; private set; } = Array.Empty<string>();
    /// <summary>How linear attention evaluates the delta rule (default chunked).</summary>
    public DeltaRuleMode DeltaRuleMode { get; set; } = DeltaRuleMode.Chunked;
    /// <summary>Chunk length of the chunked delta rule.</summary>
    public int ChunkSize { get; set; } = 64;

    /// <inheritdoc />
    public override string Family => Config.IsQwen3Next ? FamilyRegistry.Qwen3Next.Id : FamilyRegistry.Qwen35.Id;
    /// <inheritdoc />
    public override int VocabSize => Config.VocabSize;
    /// <inheritdoc />
    public override int NumHiddenLayers => Config.NumHiddenLayers;
    /// <inheritdoc />
    public override int MtpDepthCount => Depths;
    /// <inheritdoc />
    public override bool IsIgnoredCheckpointTensor(string name) => name.StartsWith("model.visual.", StringComparison.Ordinal);
    /// <inheritdoc />
    public override bool KeepsFloat32(string name) => name.EndsWith(".linear_attn.A_log", StringComparison.Ordinal);

    /// <summary>Creates a zero-initialised model with <paramref name="mtpLayers"/> MTP layers (default: the config's).</summary>
    public QwenModel(QwenConfig config, ScalarType dtype, Device device, int? mtpLayers = null) : base("QwenModel", dtype, device)
    {
        Config = config;
        Depths = mtpLayers ?? config.MtpLayers ?? 0;
        model = new QwenBody(config, dtype, device);
        if (!config.TieWordEmbeddings) lm_head = new Linear(config.HiddenSize, config.VocabSize, dtype, device);
        mtp = new MtpStack<QwenMtpLayer>(Enumerable.Range(0, Depths).Select(j => new QwenMtpLayer(config, j == 0, dtype, device)));
        RegisterComponents();
    }

    /// <summary>The main body.</summary>
    public QwenBody Body => model;
    /// <summary>The MTP layers.</summary>
    public IReadOnlyList<QwenMtpLayer> MtpLayers => mtp.Layers;

    /// <summary>
    /// Loads a Qwen3.5 / Qwen3-Next checkpoint strictly (see <see cref="CheckpointIO.Fill"/>);
    /// <c>model.visual.*</c> is listed in <see cref="IgnoredTensors"/>. Qwen3-Next without
    /// <c>num_nextn_predict_layers</c>: the MTP layers are counted from the checkpoint's keys.
    /// </summary>
    public static new QwenModel Load(string dir, Device device, ScalarType dtype)
    {
        using var src = ModelSource.Open(dir, dtype);
        return Load(src, device, dtype);
    }

    /// <summary>Loads from a tensor source (a training-layout checkpoint, or an HF one converted in memory).</summary>
    public static QwenModel Load(ITensorSource ckpt, Device device, ScalarType dtype)
    {
        var cfg = QwenConfig.FromJson(ModelSource.ConfigOf(ckpt));
        int d = cfg.MtpLayers ?? ckpt.Tensors.Select(t => t.Name).Where(n => n.StartsWith("mtp.layers.", StringComparison.Ordinal))
            .Select(n => int.TryParse(n.Split('.')[2], out int j) ? j + 1 : 0).DefaultIfEmpty(0).Max();
        QwenModel m;
        using (no_grad()) using (P.ForLoading()) m = new QwenModel(cfg, dtype, device, d);
        try
        {
            m.IgnoredTensors = CheckpointIO.Fill(m, ckpt);
            return m;
        }
        catch
        {
            m.Dispose();
            throw;
        }
    }

    /// <summary>Mask, rope tables and sequence layout of a batch (positions restart per packed sequence).</summary>
    public QwenContext Context(long[] cu, long rows, long seqLen, Tensor? positions = null)
    {
        positions ??= tensor(Packing.Positions(cu), device: Device).view(rows, seqLen);
        var (cos, sin) = QwenRope.CosSin(Config.RotaryDim, Config.RopeTheta, positions);
        return new QwenContext(Packing.AttentionMask(cu, rows, seqLen, Device), cos, sin, SegmentLayout.Create(cu, Device), DeltaRuleMode, ChunkSize);
    }

    /// <summary>Output head: lm_head, or the embedding when tied.</summary>
    public Tensor Head(Tensor h) => nn.functional.linear(h, lm_head?.Weight ?? model.EmbedTokens.Weight);

    /// <inheritdoc />
    protected override QwenContext CreateContext(long[] cu, long rows, long seqLen, Tensor positions) => Context(cu, rows, seqLen, positions);

    /// <summary>
    /// h_0 = the main hidden state after the final norm; depth k:
    /// h_k = final_layernorm(block_k(eh_proj(cat(enorm(emb(ids rolled by k)), hnorm(h_{k-1}))))), logits_k = head(h_k).
    /// </summary>
    protected override (Tensor Hidden, Tensor Logits) MainForward(Tensor ids, QwenContext ctx)
    {
        var hidden = model.Norm.forward(model.Hidden(ids, ctx));
        return (hidden, Head(hidden));
    }

    /// <inheritdoc />
    protected override IMtpDepth<QwenContext> DepthAt(int index) => new DepthParts(this, mtp.Layers[index], mtp.Layers[0]);

    // Depth k: layer k-1's block between layer 0's shared fusion modules; the next depth reads the normed state.
    sealed class DepthParts(QwenModel m, QwenMtpLayer layer, QwenMtpLayer fusion) : IMtpDepth<QwenContext>
    {
        public bool CarriesNormed => true;
        public Tensor Embed(Tensor rolledIds) => m.model.EmbedTokens.forward(rolledIds);
        public Tensor Fuse(Tensor embedded, Tensor previous) => fusion.Fuse(embedded, previous);
        public Tensor Block(Tensor fused, Tensor rolledIds, QwenContext ctx) => layer.Block(fused, ctx);
        public Tensor FinalNorm(Tensor blockOutput) => fusion.FinalNorm(blockOutput);
        public Tensor Head(Tensor normed) => m.Head(normed);
    }
}
