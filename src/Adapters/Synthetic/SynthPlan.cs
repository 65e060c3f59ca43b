using System.Text.Json.Nodes;
using Mtp.SafeTensors;

namespace Mtp.Adapters.Synthetic;

/// <summary>How a synthetic tensor's bytes are drawn (see <see cref="SynthData"/>).</summary>
public enum SynthFill
{
    /// <summary>FP8 E4M3 codes of a normal weight spread over moderate exponents (never the NaN codes 0x7F/0xFF).</summary>
    Fp8,
    /// <summary>Packed FP4 E2M1 pairs (random bytes: every nibble is a valid code).</summary>
    Fp4,
    /// <summary>F32 block scales in [2^-17, 2^-9) (amax/448 of realistic weights).</summary>
    ScaleF32,
    /// <summary>BF16 block scales in the same range.</summary>
    ScaleBf16,
    /// <summary>E8M0 scale bytes 110..125 (2^-17..2^-2; never 0xFF).</summary>
    ScaleE8M0,
    /// <summary>BF16 normal(<see cref="SynthTensor.Mean"/>, <see cref="SynthTensor.Std"/>).</summary>
    Bf16,
    /// <summary>F32 normal(<see cref="SynthTensor.Mean"/>, <see cref="SynthTensor.Std"/>).</summary>
    F32,
    /// <summary>I32 ids uniform in [0, <see cref="SynthTensor.Max"/>).</summary>
    ExpertIds,
    /// <summary>I64 ids uniform in [0, <see cref="SynthTensor.Max"/>) (DeepSeek-V4's released tid2eid dtype).</summary>
    ExpertIds64,
    /// <summary>F32 block scales that are powers of two, 2^-17..2^-2 (<c>scale_fmt</c> "ue8m0" with F32 scales, DeepSeek-V3.2).</summary>
    ScaleF32PowerOfTwo,
}

/// <summary>One tensor of a synthetic checkpoint: its header entry and how to fill it.</summary>
/// <param name="Name">HF tensor name.</param>
/// <param name="DType">Stored dtype.</param>
/// <param name="Shape">Stored shape.</param>
/// <param name="Fill">How the bytes are drawn.</param>
/// <param name="Mean">Mean for <see cref="SynthFill.Bf16"/> / <see cref="SynthFill.F32"/>.</param>
/// <param name="Std">Standard deviation for <see cref="SynthFill.Bf16"/> / <see cref="SynthFill.F32"/>.</param>
/// <param name="Max">Exclusive upper bound for <see cref="SynthFill.ExpertIds"/>.</param>
/// <param name="SameDataAs">Name of a tensor whose bytes this one repeats (released checkpoints store identical copies, e.g. DeepSeek-V3's MTP embedding and head).</param>
public sealed record SynthTensor(string Name, DType DType, long[] Shape, SynthFill Fill, double Mean = 0, double Std = 0, int Max = 0, string? SameDataAs = null)
{
    /// <summary>The safetensors header entry.</summary>
    public TensorSpec Spec => new(Name, DType, Shape);

    /// <summary>Bytes of data.</summary>
    public long ByteLength => Spec.ByteLength;
}

/// <summary>A synthetic checkpoint: family, ordered HF tensors and config.json.</summary>
/// <param name="Family">Family id as <c>mtp inspect</c> reports it (one of <see cref="SynthModel.Families"/>).</param>
/// <param name="Tensors">Tensors in write order.</param>
/// <param name="Config">The config.json object.</param>
public sealed record SynthPlan(string Family, IReadOnlyList<SynthTensor> Tensors, JsonObject Config)
{
    /// <summary>Total data bytes.</summary>
    public long TotalBytes => Tensors.Sum(t => t.ByteLength);
}
