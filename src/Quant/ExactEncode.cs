using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Mtp.Quant;

/// <summary>
/// Exact re-encoding of BF16 weights with given power-of-two (E8M0) scales: the FP8 E4M3 or FP4 E2M1 codes whose
/// dequantization is each value exactly, or "no" as soon as one value has no such code. Pure bit arithmetic (an exponent
/// shift and a mantissa check per value, vectorized), far cheaper than rounding quantization.
/// </summary>
/// <remarks>
/// Used by <c>convert --to hf --reference</c> to write an unchanged weight back without reading the reference codes:
/// within the scale ranges accepted here (<see cref="Fp8ScaleMin"/>..<see cref="Fp8ScaleMax"/>,
/// <see cref="Fp4ScaleMin"/>..<see cref="Fp4ScaleMax"/>) every code times the scale is a normal BF16 number, so
/// dequantization is injective: the only codes that dequantize to the weight are the reference's own. A "yes" is never
/// taken on trust: <see cref="Fp8Verified"/> / <see cref="Fp4Verified"/> also prove that the codes dequantize to the
/// input bit for bit (on the Vector512 path that check is fused into the encoding pass, so the plain calls get it too),
/// and other callers confirm with <see cref="DequantEquality"/>.
/// </remarks>
public static partial class ExactEncode
{
    /// <summary>Smallest E8M0 scale code accepted for FP8: 2^-9 (the smallest E4M3 magnitude) times it is a normal BF16.</summary>
    public const int Fp8ScaleMin = 10;
    /// <summary>Largest E8M0 scale code accepted for FP8: 448 times it stays finite.</summary>
    public const int Fp8ScaleMax = 246;
    /// <summary>Smallest E8M0 scale code accepted for FP4: 0.5 times it is a normal BF16.</summary>
    public const int Fp4ScaleMin = 2;
    /// <summary>Largest E8M0 scale code accepted for FP4: 6 times it stays finite.</summary>
    public const int Fp4ScaleMax = 251;

    static bool ScalesInRange(ReadOnlySpan<byte> scales, int min, int max)
    {
        foreach (byte s in scales) if (s < min || s > max) return false;
        return true;
    }

    /// <summary>
    /// FP4 E2M1 codes (packed, low nibble = even column) for BF16 <paramref name="input"/> [rows, cols] with E8M0
    /// <paramref name="scales"/> [rows, cols/groupSize]; false when some value is not exactly a code times its scale,
    /// or a scale is out of range (then <paramref name="packed"/> holds garbage). Rows are split over
    /// <paramref name="options"/>' threads.
    /// </summary>
    /// <exception cref="ArgumentException">A span length does not match the shapes, or the group size is not a multiple of 32.</exception>
    public static bool Fp4(ReadOnlySpan<byte> input, int rows, int cols, ReadOnlySpan<byte> scales, int groupSize, Span<byte> packed,
        KernelOptions options = default) => Fp4Core(input, rows, cols, scales, groupSize, packed, options, verify: false);

    /// <summary>
    /// <see cref="Fp4(ReadOnlySpan{byte}, int, int, ReadOnlySpan{byte}, int, Span{byte}, KernelOptions)"/>, and true only
    /// when the codes are also proven to dequantize to <paramref name="input"/> bit for bit (what
    /// <see cref="DequantEquality.Fp4"/> answers), by a decoder separate from the encoder. On the Vector512 path the
    /// check is fused into the encoding pass (the input is read once); otherwise each chunk of rows is encoded and then
    /// checked with <see cref="DequantEquality.Fp4"/> while it is in cache.
    /// </summary>
    /// <exception cref="ArgumentException">As for <see cref="Fp4(ReadOnlySpan{byte}, int, int, ReadOnlySpan{byte}, int, Span{byte}, KernelOptions)"/>.</exception>
    public static bool Fp4Verified(ReadOnlySpan<byte> input, int rows, int cols, ReadOnlySpan<byte> scales, int groupSize, Span<byte> packed,
        KernelOptions options = default) => Fp4Core(input, rows, cols, scales, groupSize, packed, options, verify: true);

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static unsafe bool Fp4Core(ReadOnlySpan<byte> input, int rows, int cols, ReadOnlySpan<byte> scales, int groupSize, Span<byte> packed,
        KernelOptions options, bool verify)
    {
        if (groupSize <= 0 || groupSize % 32 != 0 || cols % groupSize != 0)
            throw new ArgumentException($"exact FP4 encoding needs whole groups of a multiple of 32 columns (weight [{rows}, {cols}], group {groupSize})");
        int groups = cols / groupSize;
        if (input.Length != (long)rows * cols * 2 || scales.Length != (long)rows * groups || packed.Length != (long)rows * cols / 2)
            throw new ArgumentException($"buffers do not fit BF16 weight [{rows}, {cols}] with FP4 groups of {groupSize}");
        if (!ScalesInRange(scales, Fp4ScaleMin, Fp4ScaleMax)) return false;
        if (rows == 0 || cols == 0) return true;
        fixed (byte* pi = input)
        fixed (byte* ps = scales)
        fixed (byte* po = packed)
        {
            byte* i0 = pi, s0 = ps, o0 = po;
            bool wide = VectorWidth.Use512;
            int step = RowsPerTask(rows, cols, 1);
            int failed = 0;
            void Body(int task)
            {
                if (Volatile.Read(ref failed) != 0) return;
                int r0 = task * step, r1 = Math.Min(rows, r0 + step);
                bool ok = wide
                    ? Fp4Rows512((ushort*)i0, cols, r0, r1, s0, groupSize, o0)
                    : Fp4Rows((ushort*)i0 + (long)r0 * cols, (long)(r1 - r0) * cols, s0 + (long)r0 * groups, groupSize, o0 + (long)r0 * cols / 2)
                      && (!verify || DequantEquality.Fp4(new ReadOnlySpan<byte>(o0 + (long)r0 * cols / 2, (r1 - r0) * cols / 2), r1 - r0, cols,
                          new ReadOnlySpan<byte>(s0 + (long)r0 * groups, (r1 - r0) * groups), groupSize,
                          new ReadOnlySpan<byte>(i0 + (long)r0 * cols * 2, (r1 - r0) * cols * 2), FloatFormat.BF16));
                if (!ok) Volatile.Write(ref failed, 1);
            }
            BlockDequant.Run((rows + step - 1) / step, options, Body);
            return failed == 0;
        }
    }

    /// <summary>
    /// Rows per task: about <see cref="TaskBytes"/> of BF16 input, and either a multiple or a divisor of
    /// <paramref name="blockRows"/> so that no task straddles two rows of scale blocks.
    /// </summary>
    static int RowsPerTask(int rows, int cols, int blockRows)
    {
        int want = (int)Math.Clamp(TaskBytes / Math.Max(1L, 2L * cols), 1, Math.Max(1, rows));
        if (want >= blockRows) return want / blockRows * blockRows;
        for (int d = want; d > 1; d--)
            if (blockRows % d == 0) return d;
        return 1;
    }

    /// <summary>Input bytes per task (fits a core's L2 cache with its codes, so the Vector256 check reads them back from cache).</summary>
    const long TaskBytes = 256 << 10;

    /// <summary>Vector256 FP4 codes of <paramref name="n"/> values (whole groups), 32 (one scale's worth) per step.</summary>
    static unsafe bool Fp4Rows(ushort* u, long n, byte* ps, int groupSize, byte* po)
    {
        var bad = Vector256<ushort>.Zero;
        for (long i = 0; i < n; i += 32)
        {
            int s = ps[i / groupSize];
            var c0 = Fp4Codes(Vector256.Load(u + i), s, ref bad);
            var c1 = Fp4Codes(Vector256.Load(u + i + 16), s, ref bad);
            // Pairs (even, odd) -> one byte: low nibble even.
            Vector256<uint> p0 = c0.AsUInt32(), p1 = c1.AsUInt32();
            p0 = (p0 & Vector256.Create(0xFu)) | ((p0 >> 12) & Vector256.Create(0xF0u));
            p1 = (p1 & Vector256.Create(0xFu)) | ((p1 >> 12) & Vector256.Create(0xF0u));
            Vector256<ushort> w = Vector256.Narrow(p0, p1);
            Vector128<byte> b = Vector128.Narrow(w.GetLower(), w.GetUpper());
            b.Store(po + i / 2);
        }
        return bad == Vector256<ushort>.Zero;
    }

    /// <summary>E2M1 codes (0..15) of 16 BF16 values at scale code <paramref name="s"/>; invalid lanes set bits in <paramref name="bad"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static Vector256<ushort> Fp4Codes(Vector256<ushort> u, int s, ref Vector256<ushort> bad)
    {
        Vector256<ushort> mag = u & Vector256.Create((ushort)0x7FFF);
        Vector256<ushort> sign = (u >> 15) << 3;
        Vector256<ushort> exp = mag >> 7, mant = mag & Vector256.Create((ushort)0x7F);
        // e = exponent of value / 2^(s-127), plus 1: 0 for 0.5, 1 for 1..1.5, 2 for 2..3, 3 for 4..6 (wraps when below).
        Vector256<ushort> e = exp - Vector256.Create((ushort)(s - 1));
        Vector256<ushort> m = mant >> 6;
        Vector256<ushort> code = Vector256.ConditionalSelect(Vector256.Equals(e, Vector256<ushort>.Zero), Vector256.Create((ushort)1), (e << 1) + m);
        Vector256<ushort> isZero = Vector256.Equals(mag, Vector256<ushort>.Zero);
        Vector256<ushort> ok = Vector256.LessThanOrEqual(e, Vector256.Create((ushort)3))
            & Vector256.Equals(mant & Vector256.Create((ushort)0x3F), Vector256<ushort>.Zero)
            & ~(Vector256.Equals(e, Vector256<ushort>.Zero) & Vector256.Equals(m, Vector256.Create((ushort)1)));
        bad |= ~(ok | isZero);
        return Vector256.ConditionalSelect(isZero, Vector256<ushort>.Zero, code) | sign;
    }

    /// <summary>
    /// FP8 E4M3 codes for BF16 <paramref name="input"/> [rows, cols] with E8M0 <paramref name="scales"/> over
    /// <paramref name="block"/>-shaped blocks; false when some value is not exactly a code times its scale, or a scale is
    /// out of range (then <paramref name="codes"/> holds garbage). Rows are split over <paramref name="options"/>' threads.
    /// </summary>
    /// <exception cref="ArgumentException">A span length does not match the shapes, or block columns are not a multiple of 16.</exception>
    public static bool Fp8(ReadOnlySpan<byte> input, int rows, int cols, ReadOnlySpan<byte> scales, BlockSize block, Span<byte> codes,
        KernelOptions options = default) => Fp8Core(input, rows, cols, scales, block, codes, options, verify: false);

    /// <summary>
    /// <see cref="Fp8(ReadOnlySpan{byte}, int, int, ReadOnlySpan{byte}, BlockSize, Span{byte}, KernelOptions)"/>, and true
    /// only when the codes are also proven to dequantize to <paramref name="input"/> bit for bit (what
    /// <see cref="DequantEquality.Fp8"/> with E8M0 scales answers), by a decoder separate from the encoder. On the
    /// Vector512 path the check is fused into the encoding pass; otherwise each chunk of rows is encoded and then checked
    /// with <see cref="DequantEquality.Fp8"/> while it is in cache.
    /// </summary>
    /// <exception cref="ArgumentException">As for <see cref="Fp8(ReadOnlySpan{byte}, int, int, ReadOnlySpan{byte}, BlockSize, Span{byte}, KernelOptions)"/>.</exception>
    public static bool Fp8Verified(ReadOnlySpan<byte> input, int rows, int cols, ReadOnlySpan<byte> scales, BlockSize block, Span<byte> codes,
        KernelOptions options = default) => Fp8Core(input, rows, cols, scales, block, codes, options, verify: true);

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static unsafe bool Fp8Core(ReadOnlySpan<byte> input, int rows, int cols, ReadOnlySpan<byte> scales, BlockSize block, Span<byte> codes,
        KernelOptions options, bool verify)
    {
        if (block.Rows <= 0 || block.Cols <= 0 || block.Cols % 16 != 0 || cols % 16 != 0)
            throw new ArgumentException($"exact FP8 encoding needs 16-multiple block and weight columns (weight [{rows}, {cols}], block {block})");
        if (block.RowChunk != 0)
            throw new ArgumentException($"block {block} restarts every {block.RowChunk} rows: encode it with RowChunkedBlocks.ExactEncodeFp8");
        var (gr, gc) = block.GridFor(rows, cols);
        if (input.Length != (long)rows * cols * 2 || scales.Length != (long)gr * gc || codes.Length != (long)rows * cols)
            throw new ArgumentException($"buffers do not fit BF16 weight [{rows}, {cols}] with FP8 blocks of {block}");
        if (!ScalesInRange(scales, Fp8ScaleMin, Fp8ScaleMax)) return false;
        if (rows == 0 || cols == 0) return true;
        fixed (byte* pi = input)
        fixed (byte* ps = scales)
        fixed (byte* po = codes)
        {
            byte* i0 = pi, s0 = ps, o0 = po;
            // The fused Vector512 kernel steps 32 columns within one block.
            bool wide = VectorWidth.Use512 && block.Cols % 32 == 0 && cols % 32 == 0;
            int step = RowsPerTask(rows, cols, block.Rows);
            int failed = 0;
            void Body(int task)
            {
                if (Volatile.Read(ref failed) != 0) return;
                int r0 = task * step, r1 = Math.Min(rows, r0 + step);
                bool ok;
                if (wide) ok = Fp8Rows512((ushort*)i0, cols, r0, r1, s0, gc, block, o0);
                else
                {
                    ok = Fp8Rows((ushort*)i0, cols, r0, r1, s0, gc, block, o0);
                    if (ok && verify)
                    {
                        // r0 starts a row of blocks or lies inside one with the whole task (RowsPerTask).
                        int g0 = r0 / block.Rows, gn = (r1 - 1) / block.Rows - g0 + 1;
                        ok = DequantEquality.Fp8(new ReadOnlySpan<byte>(o0 + (long)r0 * cols, (r1 - r0) * cols), r1 - r0, cols,
                            new ReadOnlySpan<byte>(s0 + (long)g0 * gc, gn * gc), ScaleFormat.E8M0, block,
                            new ReadOnlySpan<byte>(i0 + (long)r0 * cols * 2, (r1 - r0) * cols * 2), FloatFormat.BF16);
                    }
                }
                if (!ok) Volatile.Write(ref failed, 1);
            }
            BlockDequant.Run((rows + step - 1) / step, options, Body);
            return failed == 0;
        }
    }

    /// <summary>Vector256 FP8 codes of rows [<paramref name="r0"/>, <paramref name="r1"/>), 16 values per step.</summary>
    static unsafe bool Fp8Rows(ushort* input, int cols, int r0, int r1, byte* scales, int gc, BlockSize block, byte* codes)
    {
        var bad = Vector256<ushort>.Zero;
        for (int r = r0; r < r1; r++)
        {
            ushort* u = input + (long)r * cols;
            byte* o = codes + (long)r * cols;
            byte* srow = scales + (long)(r / block.Rows) * gc;
            for (int j = 0; j < cols; j += 16)
            {
                var c = Fp8Codes(Vector256.Load(u + j), srow[j / block.Cols], ref bad);
                Vector128.Narrow(c.GetLower(), c.GetUpper()).Store(o + j);
            }
        }
        return bad == Vector256<ushort>.Zero;
    }

    /// <summary>E4M3 codes (in ushort lanes) of 16 BF16 values at scale code <paramref name="s"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static Vector256<ushort> Fp8Codes(Vector256<ushort> u, int s, ref Vector256<ushort> bad)
    {
        Vector256<ushort> mag = u & Vector256.Create((ushort)0x7FFF);
        Vector256<ushort> sign = (u >> 15) << 7;
        Vector256<ushort> exp = mag >> 7, mant = mag & Vector256.Create((ushort)0x7F);
        // t = E4M3 biased exponent (value exponent + 7) plus 3, so that subnormal exponents -9..-7 are t = 1..3 and
        // normal ones -6..8 are t = 4..18 (wraps when below).
        Vector256<ushort> t = exp - Vector256.Create((ushort)(s - 10));
        Vector256<ushort> normal = Vector256.GreaterThanOrEqual(t, Vector256.Create((ushort)4)) & Vector256.LessThanOrEqual(t, Vector256.Create((ushort)18));
        Vector256<ushort> codeN = ((t - Vector256.Create((ushort)3)) << 3) | (mant >> 4);
        Vector256<ushort> okN = normal & Vector256.Equals(mant & Vector256.Create((ushort)0xF), Vector256<ushort>.Zero)
            & ~Vector256.Equals(codeN, Vector256.Create((ushort)0x7F));
        // Subnormal codes k * 2^-9: t = 3 -> k = 4 + top two mantissa bits; t = 2 -> k = 2 + top bit; t = 1 -> k = 1.
        Vector256<ushort> t3 = Vector256.Equals(t, Vector256.Create((ushort)3)), t2 = Vector256.Equals(t, Vector256.Create((ushort)2)),
            t1 = Vector256.Equals(t, Vector256.Create((ushort)1));
        Vector256<ushort> codeS = (t3 & (Vector256.Create((ushort)4) + (mant >> 5))) | (t2 & (Vector256.Create((ushort)2) + (mant >> 6))) | (t1 & Vector256.Create((ushort)1));
        Vector256<ushort> okS = (t3 & Vector256.Equals(mant & Vector256.Create((ushort)0x1F), Vector256<ushort>.Zero))
            | (t2 & Vector256.Equals(mant & Vector256.Create((ushort)0x3F), Vector256<ushort>.Zero))
            | (t1 & Vector256.Equals(mant, Vector256<ushort>.Zero));
        Vector256<ushort> isZero = Vector256.Equals(mag, Vector256<ushort>.Zero);
        bad |= ~(okN | okS | isZero);
        Vector256<ushort> code = Vector256.ConditionalSelect(normal, codeN, codeS);
        return Vector256.ConditionalSelect(isZero, Vector256<ushort>.Zero, code) | sign;
    }
}
