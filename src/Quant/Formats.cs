using System.Runtime.CompilerServices;

namespace Mtp.Quant;

/// <summary>
/// FP8 E4M3 with PyTorch <c>float8_e4m3fn</c> semantics: 1 sign, 4 exponent (bias 7), 3 mantissa bits,
/// no infinities, <c>0x7F</c>/<c>0xFF</c> are NaN, max finite 448, min subnormal 2^-9.
/// </summary>
public static class Fp8E4M3
{
    /// <summary>Largest finite magnitude (code 0x7E).</summary>
    public const float MaxFinite = 448f;

    /// <summary>Decoded value of every code (index = code).</summary>
    internal static readonly float[] Table = BuildTable();

    static float[] BuildTable()
    {
        var t = new float[256];
        for (int c = 0; c < 256; c++)
        {
            int e = (c >> 3) & 15, m = c & 7;
            float mag;
            if ((c & 0x7F) == 0x7F) { t[c] = BitConverter.UInt32BitsToSingle(0x7FF00000u | ((uint)(c & 0x80) << 24)); continue; }
            else if (e == 0) mag = m * (1f / 512f);
            else mag = (1f + m / 8f) * MathF.Pow(2f, e - 7);
            t[c] = (c & 0x80) != 0 ? -mag : mag;
        }
        return t;
    }

    /// <summary>Decodes one code to binary32 (exact). NaN codes give PyTorch's bit patterns: 0x7F -> 0x7FF00000, 0xFF -> 0xFFF00000.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float ToFloat(byte code) => Table[code];

    /// <summary>
    /// Encodes a binary32 value exactly as PyTorch's <c>c10::Float8_e4m3fn</c> conversion does:
    /// round to nearest, ties to even; 464 (the tie between 448 and the NaN pattern) rounds to 448; any larger
    /// magnitude, infinity or NaN becomes the NaN pattern <c>0x7F</c> with the input's sign bit ORed in
    /// (so negative values give <c>0xFF</c>; checked against PyTorch 2.x: -500 and -NaN give 0xFF, although the
    /// format notes say "NaN of either sign becomes 0x7F"). -0.0 gives <c>0x80</c>. No saturation: clamp first if you want it.
    /// </summary>
    public static byte FromFloat(float value)
    {
        uint f = BitConverter.SingleToUInt32Bits(value);
        uint sign = f & 0x80000000u;
        f ^= sign;
        uint result;
        if (f >= (1087u << 20)) result = 0x7F;               // >= 480, inf, NaN
        else if (f < (121u << 23))                            // below 2^-6: subnormal range
        {
            float denormMask = BitConverter.UInt32BitsToSingle(141u << 23);
            f = BitConverter.SingleToUInt32Bits(BitConverter.UInt32BitsToSingle(f) + denormMask);
            result = f - (141u << 23);
        }
        else
        {
            uint mantOdd = (f >> 20) & 1;
            f += unchecked((uint)((7 - 127) << 23)) + 0x7FFFF;
            f += mantOdd;
            result = f >> 20;
        }
        return (byte)(result | (sign >> 24));
    }
}

/// <summary>FP8 E5M2 (PyTorch <c>float8_e5m2</c>): IEEE-like, bias 15, infinities, max finite 57344.</summary>
public static class Fp8E5M2
{
    /// <summary>Largest finite magnitude.</summary>
    public const float MaxFinite = 57344f;

    /// <summary>Decodes one code to binary32 (exact; it is the upper byte of an IEEE binary16).</summary>
    public static float ToFloat(byte code) => (float)BitConverter.UInt16BitsToHalf((ushort)(code << 8));

    /// <summary>
    /// Encodes like PyTorch's <c>c10::Float8_e5m2</c>: round to nearest even; magnitudes that round past 57344
    /// (>= 61440) become infinity (<c>0x7C</c> | sign); NaN becomes <c>0x7F</c> | sign.
    /// </summary>
    public static byte FromFloat(float value)
    {
        uint f = BitConverter.SingleToUInt32Bits(value);
        uint sign = f & 0x80000000u;
        f ^= sign;
        uint result;
        if (f >= (143u << 23)) result = f > (255u << 23) ? 0x7Fu : 0x7Cu;
        else if (f < (113u << 23))
        {
            float denormMask = BitConverter.UInt32BitsToSingle(134u << 23);
            f = BitConverter.SingleToUInt32Bits(BitConverter.UInt32BitsToSingle(f) + denormMask);
            result = f - (134u << 23);
        }
        else
        {
            uint mantOdd = (f >> 21) & 1;
            f += unchecked((uint)((15 - 127) << 23)) + 0xFFFFF;
            f += mantOdd;
            result = f >> 21;
        }
        return (byte)(result | (sign >> 24));
    }
}

/// <summary>
/// OCP E8M0 ("ue8m0") power-of-two scale byte: value = 2^(code-127), <c>0xFF</c> = NaN,
/// code 0 = 2^-127 (OCP / PyTorch meaning; NeMo's decoding of 0 as 0.0 is not followed).
/// </summary>
public static class E8M0
{
    /// <summary>The NaN code.</summary>
    public const byte NaN = 0xFF;

    /// <summary>Decodes a code: 2^(code-127); 0 gives 2^-127 (a binary32 subnormal); 0xFF gives NaN.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float ToFloat(byte code)
    {
        if (code == 0xFF) return float.NaN;
        if (code == 0) return BitConverter.UInt32BitsToSingle(0x00400000u);
        return BitConverter.UInt32BitsToSingle((uint)code << 23);
    }

    /// <summary>Code of an exact positive power of two in [2^-127, 2^127]; throws <see cref="ArgumentException"/> otherwise (NaN included).</summary>
    public static byte FromPowerOfTwo(float value)
    {
        uint b = BitConverter.SingleToUInt32Bits(value);
        if (b == 0x00400000u) return 0;
        uint e = b >> 23, m = b & 0x7FFFFF;
        if (e >= 1 && e <= 254 && m == 0) return (byte)e;
        throw new ArgumentException($"{value:R} is not a power of two representable in E8M0 ([2^-127, 2^127]).", nameof(value));
    }

    /// <summary>
    /// Smallest code e with 2^(e-127) &gt;= <paramref name="value"/>, clamped to [0, 254]
    /// (values &lt;= 2^-127, zero and negatives give 0; values above 2^127 and +inf give 254); NaN gives 0xFF.
    /// </summary>
    public static byte CeilLog2Code(float value)
    {
        if (float.IsNaN(value)) return NaN;
        if (value <= BitConverter.UInt32BitsToSingle(0x00400000u)) return 0;
        uint b = BitConverter.SingleToUInt32Bits(value);
        uint e = b >> 23, m = b & 0x7FFFFF;
        if (e == 0) return 1;                 // subnormal above 2^-127: 2^-126 covers it
        uint code = m == 0 ? e : e + 1;
        return (byte)Math.Min(code, 254u);
    }
}

/// <summary>
/// FP4 E2M1 (MXFP4 element): codes 0..15 = [0, 0.5, 1, 1.5, 2, 3, 4, 6, -0, -0.5, -1, -1.5, -2, -3, -4, -6].
/// Packed two per byte: low nibble = even column, high nibble = odd column.
/// </summary>
public static class Fp4E2M1
{
    /// <summary>Largest magnitude.</summary>
    public const float MaxFinite = 6f;

    internal static readonly float[] Table =
        [0f, 0.5f, 1f, 1.5f, 2f, 3f, 4f, 6f, -0f, -0.5f, -1f, -1.5f, -2f, -3f, -4f, -6f];

    /// <summary>Decodes the low 4 bits of <paramref name="nibble"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float ToFloat(int nibble) => Table[nibble & 15];

    /// <summary>
    /// Nearest code, ties to even mantissa (e.g. 0.25 -> 0, 0.75 -> 1, 2.5 -> 2, 3.5 -> 4, 5 -> 4), saturating at
    /// +-6 (any magnitude above 5 gives 6, infinities included). Negative values and -0.0 get the sign bit.
    /// Throws <see cref="ArgumentException"/> for NaN (E2M1 has none).
    /// </summary>
    public static byte FromFloat(float value)
    {
        if (float.IsNaN(value)) throw new ArgumentException("NaN has no FP4 E2M1 code.", nameof(value));
        float a = MathF.Abs(value);
        int c = MagnitudeCode(a);
        return (byte)(float.IsNegative(value) ? c | 8 : c);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static int MagnitudeCode(float a) =>
        (a > 0.25f ? 1 : 0) + (a >= 0.75f ? 1 : 0) + (a > 1.25f ? 1 : 0) + (a >= 1.75f ? 1 : 0)
        + (a > 2.5f ? 1 : 0) + (a >= 3.5f ? 1 : 0) + (a > 5f ? 1 : 0);
}

/// <summary>bfloat16 conversions (PyTorch semantics for finite values: round to nearest, ties to even).</summary>
public static class BFloat16
{
    /// <summary>
    /// Rounds to nearest even. Infinities stay infinite, overflow rounds to infinity, -0.0 stays -0.0.
    /// Every NaN (either sign, any payload) becomes the canonical quiet NaN <c>0x7FC0</c>, as PyTorch's
    /// <c>.to(torch.bfloat16)</c> does (checked on PyTorch 2.x CPU).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static ushort FromFloat(float value)
    {
        uint b = BitConverter.SingleToUInt32Bits(value);
        if ((b & 0x7FFFFFFFu) > 0x7F800000u) return 0x7FC0;
        return (ushort)((b + 0x7FFFu + ((b >> 16) & 1)) >> 16);
    }

    /// <summary>Widens exactly.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float ToFloat(ushort bits) => BitConverter.UInt32BitsToSingle((uint)bits << 16);
}
