using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Mtp.Quant;

/// <summary>
/// BF16 -> E4M3 block quantization without a division (Vector512 with VBMI): per divisor s, byte tables give the code of
/// <c>clamp(w / s, -448, 448)</c> from the 7 mantissa bits of w, and the exponent of w moves it along the table.
/// </summary>
/// <remarks>
/// <para>Why it is exact. Write |s| = m * 2^e (m in [1, 2)) and a normal BF16 |w| = (1 + f/128) * 2^E. The quotient is
/// (1 + f/128) / m times 2^(E - e), and binary32 rounding commutes with that power of two while the result stays a normal
/// binary32, so <c>fl(w / s) = T[f] * 2^(E - e)</c> with <c>T[f] = fl((1 + f/128) / m)</c> in (0.5, 2). The code of
/// <c>T[f] * 2^(-5-k)</c> for k = 0..5 is stored (table k, 128 bytes); with d = E - e + 5:
/// d &gt;= 0 puts every quotient among the normal E4M3 values, where doubling adds 8 to the code, so the code is
/// <c>min(table0[f] + 8 d, 0x7E)</c> (8 d saturated at 128, beyond 448 anyway; the min is the clamp to 448);
/// d = -k for k = 1..5 reads table k (subnormal codes); d &lt;= -6 means |w / s| &lt; 2^-10, code 0. The sign is the XOR of
/// the signs. Zero and subnormal BF16 weights land at d &lt;= -6 because |s| is kept in [2^-100, 2^101): there |w / s| &lt; 2^-25.
/// Other divisors (and NaN or infinite weights, whose block is refused anyway) are not handled here.</para>
/// <para>Work per 64 weights: two loads, two byte permutes to split the low and high bytes, one table permute and a few
/// byte operations, plus five table permutes when some weight is small enough to need table 1..5.</para>
/// </remarks>
internal static unsafe class Fp8QuantLut
{
    /// <summary>Bytes of one divisor's tables: six tables of 128 codes.</summary>
    public const int TableBytes = 6 * 128;

    /// <summary>Smallest and one past the largest binary32 exponent field of |s| the tables serve (|s| in [2^-100, 2^101)).</summary>
    const int MinScaleExp = 127 - 100, MaxScaleExp = 127 + 101;

    /// <summary>Weights ahead of the current step that are prefetched (4 KiB): measured a little faster on data beyond L2.</summary>
    const int PrefetchAhead = 2048;

    /// <summary>Whether divisor <paramref name="s"/> is one these tables serve (finite, |s| in [2^-100, 2^101)).</summary>
    public static bool Serves(float s)
    {
        int e = (BitConverter.SingleToInt32Bits(s) >> 23) & 0xFF;
        return e >= MinScaleExp && e < MaxScaleExp;
    }

    /// <summary>
    /// Writes the tables of divisor <paramref name="s"/> (which <see cref="Serves"/>) at <paramref name="tables"/>; returns
    /// the packed per-divisor constants: exponent reference (E at which d = 0) in the low byte, sign flip (0 or 0x80) in the next.
    /// </summary>
    public static int Build(float s, byte* tables)
    {
        int bits = BitConverter.SingleToInt32Bits(s);
        int e = (bits >> 23) & 0xFF;
        float m = BitConverter.Int32BitsToSingle((bits & 0x7FFFFF) | (127 << 23));
        Vector512<float> mv = Vector512.Create(m);
        for (int q = 0; q < 8; q++)
        {
            // 1 + f/128 for f = 16q .. 16q+15 (exact), over m: T[f] rounded once, as the division would.
            Vector512<float> f = Vector512.ConvertToSingle(Vector512.Create(16 * q) + Vector512.Create(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15));
            Vector512<float> t = (Vector512<float>.One + f * Vector512.Create(1f / 128)) / mv;
            for (int k = 0; k < 6; k++)
                Avx512F.ConvertToVector128Byte(VectorKernels.EncodeClampedE4M3(t * Vector512.Create(MathF.ScaleB(1f, -5 - k))))
                    .Store(tables + 128 * k + 16 * q);
        }
        return (e - 5) | (bits < 0 ? 0x8000 : 0);
    }

    /// <summary>
    /// Codes of the first whole multiple of 64 of <paramref name="n"/> BF16 weights at <paramref name="w"/> for the divisor
    /// whose <paramref name="tables"/> and <paramref name="constants"/> <see cref="Build"/> made; with <paramref name="track"/>
    /// also folds their BF16 magnitude bits into <paramref name="acc"/>. Returns the weights done.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static int Row(ushort* w, int n, byte* tables, int constants, byte* codes, ref Vector512<ushort> acc, bool track)
    {
        // No static fields here: their initialization check would make the JIT keep the vectors below on the stack.
        Vector512<byte> eref = Vector512.Create((byte)constants), flip = Vector512.Create((byte)(constants >> 8));
        Vector512<byte> t0a = Vector512.Load(tables), t0b = Vector512.Load(tables + 64);
        // Byte k of the low (even) bytes of two vectors of words, and of the high (odd) bytes.
        Vector512<byte> even = Vector512<byte>.Indices + Vector512<byte>.Indices, odd = even + Vector512<byte>.One;
        Vector512<ushort> mag = Vector512.Create((ushort)0x7FFF);
        Vector512<ushort> a = acc;
        int i = 0;
        for (; i <= n - 64; i += 64)
        {
            Sse.Prefetch0(w + i + PrefetchAhead);
            Sse.Prefetch0(w + i + PrefetchAhead + 32);
            Vector512<byte> x0 = Vector512.Load(w + i).AsByte(), x1 = Vector512.Load(w + i + 32).AsByte();
            if (track) a = Vector512.Max(a, Vector512.Max(x0.AsUInt16() & mag, x1.AsUInt16() & mag));
            // lo = E0 f6..f0 and hi = sign E7..E1 of the 64 weights, in element order.
            Vector512<byte> lo = Avx512Vbmi.PermuteVar64x8x2(x0, even, x1), hi = Avx512Vbmi.PermuteVar64x8x2(x0, odd, x1);
            // The exponent E: hi doubled (drops the sign) plus the top bit of lo (a word shift, then one bit per byte).
            Vector512<byte> ex = (hi + hi) | ((lo.AsUInt16() >> 7).AsByte() & Vector512<byte>.One);
            Vector512<byte> up = Avx512BW.Min(Avx512BW.SubtractSaturate(ex, eref), Vector512.Create((byte)16));
            // Bytes of at most 16 shifted by 3 in word lanes: no bit crosses into the next byte.
            Vector512<byte> code = Avx512BW.Min(Avx512Vbmi.PermuteVar64x8x2(t0a, lo, t0b) + (up.AsUInt16() << 3).AsByte(), Vector512.Create((byte)0x7E));
            Vector512<byte> down = Avx512BW.SubtractSaturate(eref, ex);
            if (down != Vector512<byte>.Zero) code = Small(code, lo, down, tables);
            // code | (sign of w XOR sign of s): table 0xF8 is A | (B & C).
            Avx512F.TernaryLogic(code, hi ^ flip, Vector512.Create((byte)0x80), 0xF8).Store(codes + i);
        }
        acc = a;
        return i;
    }

    /// <summary>The lanes whose quotient is below 2^-6 (d &lt; 0): codes from tables 1..5, or 0 below 2^-10.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static Vector512<byte> Small(Vector512<byte> code, Vector512<byte> lo, Vector512<byte> down, byte* t)
    {
        // Written out with constant k: a loop keeps k in a register and broadcasts it each time (measured slower).
        code = Pick(code, lo, down, t, 1);
        code = Pick(code, lo, down, t, 2);
        code = Pick(code, lo, down, t, 3);
        code = Pick(code, lo, down, t, 4);
        code = Pick(code, lo, down, t, 5);
        return Vector512.AndNot(code, Vector512.GreaterThan(down, Vector512.Create((byte)5)));
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static Vector512<byte> Pick(Vector512<byte> code, Vector512<byte> lo, Vector512<byte> down, byte* t, byte k) =>
        Vector512.ConditionalSelect(Vector512.Equals(down, Vector512.Create(k)),
            Avx512Vbmi.PermuteVar64x8x2(Vector512.Load(t + 128 * k), lo, Vector512.Load(t + 128 * k + 64)), code);
}
