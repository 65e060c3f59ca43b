using Mtp.SafeTensors;

namespace Mtp.Adapters.Synthetic;

/// <summary>
/// How a synthetic model stores one HF tensor its family's rule table names: a plain tensor, or a quantized weight
/// that brings its scale (named by the family's <see cref="QuantScheme"/>). The rule table says which names exist;
/// a family's storage function only says how each is sized, typed and filled.
/// </summary>
internal abstract record SynthStorage
{
    /// <summary>The tensors stored for HF name <paramref name="name"/> (the weight, then its scale if quantized).</summary>
    public abstract IEnumerable<SynthTensor> Tensors(string name, QuantScheme scheme);

    /// <summary>BF16 normal(0, <paramref name="std"/>).</summary>
    public static SynthStorage Bf16(double std, params long[] shape) => new Plain(DType.BF16, shape, SynthFill.Bf16, 0, std);

    /// <summary>A norm weight [<paramref name="n"/>]: BF16 normal(1, 0.1).</summary>
    public static SynthStorage Norm(long n) => new Plain(DType.BF16, new[] { n }, SynthFill.Bf16, 1.0, 0.1);

    /// <summary>F32 normal(0, <paramref name="std"/>).</summary>
    public static SynthStorage F32(double std, params long[] shape) => new Plain(DType.F32, shape, SynthFill.F32, 0, std);

    /// <summary>Expert ids in [0, <paramref name="max"/>) stored as <paramref name="type"/> (I32, or I64 as DeepSeek-V4's released tid2eid).</summary>
    public static SynthStorage Ids(int max, DType type, params long[] shape) =>
        new Plain(type, shape, type == DType.I64 ? SynthFill.ExpertIds64 : SynthFill.ExpertIds, 0, 0, max);

    /// <summary>FP8 E4M3 block-quantized weight [rows, cols] with a <paramref name="scaleType"/> scale per block of the scheme (128x128 in every release).</summary>
    /// <paramref name="powerOfTwo"/>: F32 scales that are powers of two (<c>scale_fmt</c> "ue8m0").
    public static SynthStorage Fp8(long rows, long cols, DType scaleType, bool powerOfTwo = false) => new Fp8Weight(rows, cols, scaleType, powerOfTwo);

    /// <summary>Packed FP4 weight: I8 [rows, cols/2] with an E8M0 scale per group of columns.</summary>
    public static SynthStorage Fp4(long rows, long cols) => new Fp4Weight(rows, cols);

    /// <summary>One unquantized tensor.</summary>
    sealed record Plain(DType DType, long[] Shape, SynthFill Fill, double Mean, double Std, int Max = 0) : SynthStorage
    {
        public override IEnumerable<SynthTensor> Tensors(string name, QuantScheme scheme) =>
            new[] { new SynthTensor(name, DType, Shape, Fill, Mean, Std, Max) };
    }

    /// <summary>An FP8 weight and its block scale.</summary>
    sealed record Fp8Weight(long Rows, long Cols, DType ScaleType, bool PowerOfTwo) : SynthStorage
    {
        static long Ceil(long a, long b) => (a + b - 1) / b;

        public override IEnumerable<SynthTensor> Tensors(string name, QuantScheme scheme)
        {
            SynthFill f = ScaleType switch
            {
                DType.F32 => PowerOfTwo ? SynthFill.ScaleF32PowerOfTwo : SynthFill.ScaleF32,
                DType.BF16 => SynthFill.ScaleBf16,
                DType.F8_E8M0 => SynthFill.ScaleE8M0,
                _ => throw new ArgumentOutOfRangeException(nameof(ScaleType)),
            };
            yield return new SynthTensor(name, DType.F8_E4M3, new[] { Rows, Cols }, SynthFill.Fp8);
            yield return new SynthTensor(scheme.ScaleNameOf(name), ScaleType, new[] { Ceil(Rows, scheme.BlockSize), Ceil(Cols, scheme.BlockSize) }, f);
        }
    }

    /// <summary>A packed FP4 weight and its E8M0 group scale.</summary>
    sealed record Fp4Weight(long Rows, long Cols) : SynthStorage
    {
        public override IEnumerable<SynthTensor> Tensors(string name, QuantScheme scheme)
        {
            int group = scheme.Fp4Group;
            if (Cols % group != 0)
                throw new ArgumentException($"{StemOf(name)}: FP4 input dimension {Cols} is not a multiple of {group}");
            return new[]
            {
                new SynthTensor(name, DType.I8, new[] { Rows, Cols / 2 }, SynthFill.Fp4),
                new SynthTensor(scheme.ScaleNameOf(name), DType.F8_E8M0, new[] { Rows, Cols / group }, SynthFill.ScaleE8M0),
            };
        }

        static string StemOf(string name) => name.EndsWith(".weight", StringComparison.Ordinal) ? name[..^".weight".Length] : name;
    }
}
