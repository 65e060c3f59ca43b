using System.Text.Json.Nodes;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Mtp.Model;

/// <summary>Logits of one forward: main [B, S, V] and per depth [B, S, V] with that depth's labels.</summary>
/// <param name="MainLogits">Main next-token logits.</param>
/// <param name="MtpLogits">Depth k (index k-1) predicts token t+k+1.</param>
/// <param name="MtpLabels">Labels rolled left by k per sequence (tail -100).</param>
public sealed record ModelOutput(Tensor MainLogits, IReadOnlyList<Tensor> MtpLogits, IReadOnlyList<Tensor> MtpLabels);

/// <summary>
/// A causal language model with D multi-token-prediction depths, whatever its family. Parameter and
/// buffer names equal the training-layout checkpoint names, so strict loading, saving, training and
/// export are family-independent; each family adds a subclass and one line in <see cref="ModelRegistry"/>.
/// </summary>
public abstract partial class MtpModel : nn.Module
{
    /// <summary>Creates the base with the module name, parameter dtype and device.</summary>
    protected MtpModel(string name, ScalarType dtype, Device device) : base(name)
    {
        DType = dtype;
        Device = device;
    }

    /// <summary>Parameter dtype (tensors the family keeps in F32 or integers excepted).</summary>
    public ScalarType DType { get; }
    /// <summary>Device of every tensor.</summary>
    public Device Device { get; }
    /// <summary>Family id (deepseek-v3, qwen3.5, deepseek-v4, ...).</summary>
    public abstract string Family { get; }
    /// <summary>Vocabulary size.</summary>
    public abstract int VocabSize { get; }
    /// <summary>Main decoder layers.</summary>
    public abstract int NumHiddenLayers { get; }
    /// <summary>MTP depths D.</summary>
    public abstract int MtpDepthCount { get; }

    /// <summary>
    /// Checkpoint tensors the model deliberately does not model (for example a vision tower): loading
    /// lists them as ignored instead of failing on them. None by default.
    /// </summary>
    public virtual bool IsIgnoredCheckpointTensor(string name) => false;

    /// <summary>The config.json of the checkpoint loaded (the training layout's, also when it came from a Hugging Face one), if any.</summary>
    public JsonObject? SourceConfig { get; internal set; }

    /// <summary>
    /// Set when the weights came from a Hugging Face checkpoint converted in memory: its source record (what conversion.json
    /// would carry), so a save exports back to that format. Null for a training-layout checkpoint.
    /// </summary>
    public JsonObject? SourceLineage { get; internal set; }

    /// <summary>The ignored checkpoint tensors of the last load, byte for byte: saving writes them back unchanged.</summary>
    public IReadOnlyList<(Mtp.SafeTensors.TensorSpec Spec, byte[] Data)> CarriedTensors { get; internal set; } = Array.Empty<(Mtp.SafeTensors.TensorSpec, byte[])>();

    /// <summary>
    /// Tensors kept in F32 whatever the training dtype (saved as F32 too), as the released checkpoints
    /// store them: router biases, mixing parameters and the like. None by default.
    /// </summary>
    public virtual bool KeepsFloat32(string name) => false;

    /// <summary>
    /// Main and MTP logits. Depth k consumes ids rolled left by k per sequence (tail 0) at the batch's own in-sequence
    /// positions: every family's attention uses RoPE, which sees only position differences, so rolling the positions
    /// along with the ids (as Megatron/NeMo do) would change no logit a label reads.
    /// </summary>
    public abstract ModelOutput Forward(PackedBatch batch);

    /// <summary>Forward plus <see cref="MtpLoss.Compute"/>.</summary>
    public LossOutput Loss(PackedBatch batch, double mtpLossScale)
    {
        var o = Forward(batch);
        return MtpLoss.Compute(o.MainLogits, batch.Labels.to(ScalarType.Int64, Device), o.MtpLogits, o.MtpLabels, mtpLossScale);
    }

    /// <summary>Every parameter and buffer by checkpoint name.</summary>
    public IReadOnlyDictionary<string, Tensor> StateDict()
    {
        var d = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        foreach (var (name, p) in named_parameters()) d[name] = p;
        foreach (var (name, b) in named_buffers()) d[name] = b;
        return d;
    }

    /// <summary>Trainable parameters by name, in registration order.</summary>
    public IReadOnlyList<(string Name, Parameter Param)> TrainableParameters() =>
        named_parameters().Where(p => p.parameter.requires_grad).Select(p => (p.name, p.parameter)).ToList();

    /// <summary>
    /// Loads a checkpoint of any registered family (chosen by config.json's model_type): the training layout, or a Hugging
    /// Face checkpoint converted in memory in <paramref name="dtype"/> (<see cref="ModelSource"/>).
    /// </summary>
    public static MtpModel Load(string dir, Device device, ScalarType dtype) => ModelRegistry.Load(dir, device, dtype);
}
