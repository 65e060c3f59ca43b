using System.Runtime.InteropServices;
using Mtp.Quant;

namespace Mtp.Adapters;

/// <summary>
/// <c>scale_fmt: ue8m0</c> in a DeepSeek-V3-style quantization_config: the F32 block scales are powers of two (the values an
/// E8M0 byte holds). Checked on the way in, produced on the way out (quantized with E8M0 scales, written as F32).
/// </summary>
internal static class PowerOfTwoScales
{
    /// <summary>Throws (naming the file, tensor and first offending scale) unless every F32 scale of <paramref name="scale"/> is a power of two.</summary>
    public static void Check(Src scale)
    {
        var f = MemoryMarshal.Cast<byte, uint>(scale.All);
        for (int i = 0; i < f.Length; i++)
        {
            if (IsPowerOfTwo(f[i])) continue;
            long bad = 0;
            for (int j = i; j < f.Length; j++) if (!IsPowerOfTwo(f[j])) bad++;
            long first = scale.Offset / 4 + i;
            throw PieceErrors.Malformed(scale,
                $"quantization_config says scale_fmt 'ue8m0' but {bad} F32 scale(s) here are not powers of two (first: element {first} = {BitConverter.UInt32BitsToSingle(f[i]):R})");
        }
    }

    // Positive normal with an empty mantissa, or 2^-127 (the subnormal E8M0 code 0 stands for).
    static bool IsPowerOfTwo(uint b) => b == 0x00400000u || (b >> 31) == 0 && (b >> 23) is >= 1 and <= 254 && (b & 0x7FFFFF) == 0;

    /// <summary>The E8M0 codes of a reference's F32 power-of-two scales (checked).</summary>
    public static byte[] ToE8M0(Src scale)
    {
        Check(scale);
        var f = MemoryMarshal.Cast<byte, float>(scale.All);
        var e = new byte[f.Length];
        for (int i = 0; i < f.Length; i++) e[i] = E8M0.FromPowerOfTwo(f[i]);
        return e;
    }

    /// <summary>Writes the F32 values of E8M0 codes.</summary>
    public static void ToF32(ReadOnlySpan<byte> codes, Span<byte> dest)
    {
        var f = MemoryMarshal.Cast<byte, float>(dest);
        for (int i = 0; i < codes.Length; i++) f[i] = E8M0.ToFloat(codes[i]);
    }
}
