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
/// <param name="Family">Family id as <c>mtp inspect</c> reports it (deepseek-v3, deepseek-v4, qwen3.5).</param>
/// <param name="Tensors">Tensors in write order.</param>
/// <param name="Config">The config.json object.</param>
public sealed record SynthPlan(string Family, IReadOnlyList<SynthTensor> Tensors, JsonObject Config)
{
    /// <summary>Total data bytes.</summary>
    public long TotalBytes => Tensors.Sum(t => t.ByteLength);
}

/// <summary>Collects tensors with the conventions shared by the families.</summary>
sealed class PlanBuilder
{
    /// <summary>FP8 block size of every family's release.</summary>
    public const int Block = 128;
    /// <summary>FP4 scale group (columns per E8M0 scale): DeepSeek-V4's.</summary>
    public static int Fp4Group => FamilyRegistry.Module(Adapters.Families.DeepSeekV4)!.Quant.Fp4Group;

    public readonly List<SynthTensor> Tensors = new();

    static long Ceil(long a, long b) => (a + b - 1) / b;

    public void Bf16(string name, double std, params long[] shape) => Tensors.Add(new(name, DType.BF16, shape, SynthFill.Bf16, 0, std));

    /// <summary>A tensor with the same dtype, shape and bytes as the already added <paramref name="of"/>.</summary>
    public void CopyOf(string name, string of) => Tensors.Add(Tensors.Single(t => t.Name == of) with { Name = name, SameDataAs = of });
    public void Norm(string name, long n) => Tensors.Add(new(name, DType.BF16, new[] { n }, SynthFill.Bf16, 1.0, 0.1));
    public void F32(string name, double std, params long[] shape) => Tensors.Add(new(name, DType.F32, shape, SynthFill.F32, 0, std));
    public void Ids(string name, int max, params long[] shape) => Ids(name, max, DType.I32, shape);
    /// <summary>Expert ids stored as <paramref name="type"/> (I32, or I64 as DeepSeek-V4's released tid2eid).</summary>
    public void Ids(string name, int max, DType type, params long[] shape) => Tensors.Add(new(name, type, shape, type == DType.I64 ? SynthFill.ExpertIds64 : SynthFill.ExpertIds, Max: max));

    /// <summary>FP8 E4M3 block-quantized weight <c>stem.weight</c> [rows, cols] and its scale, named as <paramref name="naming"/> says.</summary>
    public void Fp8(string stem, long rows, long cols, DType scaleType, ScaleNaming naming)
    {
        Tensors.Add(new(stem + ".weight", DType.F8_E4M3, new[] { rows, cols }, SynthFill.Fp8));
        SynthFill f = scaleType switch
        {
            DType.F32 => SynthFill.ScaleF32,
            DType.BF16 => SynthFill.ScaleBf16,
            DType.F8_E8M0 => SynthFill.ScaleE8M0,
            _ => throw new ArgumentOutOfRangeException(nameof(scaleType)),
        };
        Tensors.Add(new(naming.ScaleNameOf(stem + ".weight"), scaleType, new[] { Ceil(rows, Block), Ceil(cols, Block) }, f));
    }

    /// <summary>DeepSeek-V4 FP4 weight: I8 [rows, cols/2] plus its E8M0 scale [rows, cols/32], named as <paramref name="naming"/> says.</summary>
    public void Fp4(string stem, long rows, long cols, ScaleNaming naming)
    {
        if (cols % Fp4Group != 0) throw new ArgumentException($"{stem}: FP4 input dimension {cols} is not a multiple of {Fp4Group}");
        Tensors.Add(new(stem + ".weight", DType.I8, new[] { rows, cols / 2 }, SynthFill.Fp4));
        Tensors.Add(new(naming.ScaleNameOf(stem + ".weight"), DType.F8_E8M0, new[] { rows, cols / Fp4Group }, SynthFill.ScaleE8M0));
    }
}
