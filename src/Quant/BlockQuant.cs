using System.Numerics.Tensors;
using System.Runtime.InteropServices;

namespace Mtp.Quant;

/// <summary>
/// Block quantization kernels, the inverses of <see cref="BlockDequant"/>.
/// Codes are <c>E4M3(clamp(w / s, -448, 448))</c> (FP8) or <c>E2M1(w / s)</c> saturating (FP4), with the division
/// done in binary32 as PyTorch's reference quantizers do.
/// </summary>
/// <remarks>
/// <para><b>Round-trip promise.</b> For every E4M3 code q and scale s with 2^-117 &lt;= |s| &lt;= 2^118, quantizing
/// <c>BF16(float(q) * s)</c> (or the F32 product) with the same s returns q. Proof sketch: the F32 product and the
/// BF16 rounding give w = x*s*(1+d) with |d| &lt;= 2^-9 + 2^-24 as long as x*s is a normal number (that is what
/// the bounds on s guarantee, since the smallest nonzero |x| is 2^-9 and the largest 448); the division adds another
/// 2^-24, so w/s = x*(1+d') with |d'| &lt; 2^-8. Half an E4M3 step is at least x/30 for normal codes and
/// 2^-10 = x/(2m) &gt;= x/16 for subnormal codes m*2^-9, both far above 2^-8*x; and |w/s| &lt;= 448*(1+2^-8) &lt; 464,
/// so no clamping interferes. Zero codes stay (signed) zero. Outside those scale bounds BF16 products become
/// subnormal/overflow and the promise can fail (the tests check the boundary).</para>
/// <para><b>Reuse overflow rule.</b> In <see cref="ScaleMode.Reuse"/> a block gets a new canonical scale only when
/// some |w / s| exceeds 464 (FP8) — i.e. when the value would not round to a finite E4M3 code. Values in
/// (448 s, 464 s] round to 448 exactly as PyTorch's cast does, so dequantized data (whose BF16 rounding may push
/// 448 s slightly up) never triggers a replacement. FP4 uses the analogous bound: |w / s| &gt;= 7 (beyond what rounds
/// to 6). A reused scale that is zero (with a nonzero block) is replaced too; a NaN/infinite reused scale throws
/// <see cref="InvalidDataException"/> unless <see cref="KernelOptions.AllowNonFiniteScales"/>, in which case it is replaced.</para>
/// <para><b>Canonical scales.</b> F32: amax/448. BF16: BF16(amax/448), and that rounded scale is used to quantize.
/// E8M0 (and FP4): the smallest power of two 2^k with amax &lt;= qmax * 2^k, i.e. 2^ceil(log2(amax/qmax)), evaluated
/// exactly (no rounding of amax/qmax). With <see cref="KernelOptions.IdempotentPowerOfTwoScales"/> the bound is the
/// rounding boundary instead of qmax (amax &lt;= 464 * 2^k for E4M3, amax &lt; 7 * 2^k for E2M1), which makes canonical
/// re-quantization of canonically quantized data return identical codes and scales in every case; the plain formula
/// fails that only for blocks whose largest code is exactly qmax/2 (224 or 3).
/// All-zero blocks get scale 1.0 (E8M0 code 127) and zero codes (keeping the sign of -0.0).
/// Non-finite weights throw <see cref="InvalidDataException"/> naming the block.</para>
/// </remarks>
public static class BlockQuant
{
    const float E4M3Max = 448f;

    /// <summary>
    /// FP8 E4M3 block quantization with a 2-D scale grid.
    /// </summary>
    /// <param name="input">Raw weight [rows, cols] in <paramref name="inputFormat"/>.</param>
    /// <param name="inputFormat">F32 or BF16.</param>
    /// <param name="rows">Weight rows.</param>
    /// <param name="cols">Weight columns.</param>
    /// <param name="scales">Raw scale grid [ceil(rows/b0), ceil(cols/b1)]: read in Reuse mode, written for every replaced block and in Canonical mode.</param>
    /// <param name="scaleFormat">Scale storage format.</param>
    /// <param name="block">Block shape.</param>
    /// <param name="mode">Reuse the given scales or compute canonical ones.</param>
    /// <param name="codes">E4M3 output [rows, cols].</param>
    /// <param name="options">Threads, non-finite scale policy and power-of-two rule.</param>
    /// <returns>The blocks whose scale was replaced (Reuse mode only; empty in Canonical mode), in row-major order.</returns>
    public static unsafe QuantizeReport Fp8(ReadOnlySpan<byte> input, FloatFormat inputFormat, int rows, int cols, Span<byte> scales,
        ScaleFormat scaleFormat, BlockSize block, ScaleMode mode, Span<byte> codes, KernelOptions options = default)
    {
        BlockDequant.CheckDims(rows, cols);
        BlockDequant.CheckBlock(block);
        var (gr, gc) = block.GridFor(rows, cols);
        int ib = BlockDequant.BytesPerElement(inputFormat);
        BlockDequant.CheckLength(input.Length, (long)rows * cols * ib, $"{inputFormat} input buffer", $"weight [{rows}, {cols}]");
        int sb = BlockDequant.BytesPerScale(scaleFormat);
        if (scales.Length != (long)gr * gc * sb)
            throw new ArgumentException(
                $"scale grid of {scales.Length / sb} {scaleFormat} scales ({scales.Length} bytes) does not fit weight [{rows}, {cols}] with block {block} (expected [{gr}, {gc}] = {(long)gr * gc} scales, {(long)gr * gc * sb} bytes).");
        BlockDequant.CheckLength(codes.Length, (long)rows * cols, "FP8 code buffer", $"weight [{rows}, {cols}]");
        if (rows == 0 || cols == 0) return new QuantizeReport([]);

        List<(int, int)>[] changed;
        fixed (byte* pin = input)
        fixed (byte* psc = scales)
        fixed (byte* pco = codes)
        {
            var q = new Fp8BlockQuantizer(pin, psc, pco, (rows, cols, scales.Length), (inputFormat, scaleFormat, block), mode, options);
            BlockDequant.Run(gr, options, q.BlockRow);
            changed = q.Changed;
        }
        var all = new List<(int BlockRow, int BlockCol)>();
        foreach (var l in changed) all.AddRange(l);
        return new QuantizeReport(all);
    }

    /// <summary>Canonical FP8 scale for a block with max magnitude <paramref name="amax"/>, written at index <paramref name="i"/>; returns the scale as used.</summary>
    internal static float WriteCanonicalFp8(Span<byte> scales, ScaleFormat fmt, int i, float amax, KernelOptions options)
    {
        switch (fmt)
        {
            case ScaleFormat.F32:
            {
                float s = amax == 0f ? 1f : amax / E4M3Max;
                if (s == 0f) s = float.Epsilon;
                MemoryMarshal.Write(scales.Slice(i * 4, 4), in s);
                return s;
            }
            case ScaleFormat.BF16:
            {
                ushort b = amax == 0f ? BFloat16.FromFloat(1f) : BFloat16.FromFloat(amax / E4M3Max);
                if (b == 0) b = 1;
                MemoryMarshal.Write(scales.Slice(i * 2, 2), in b);
                return BFloat16.ToFloat(b);
            }
            default:
            {
                byte code = amax == 0f ? (byte)127
                    : options.IdempotentPowerOfTwoScales ? PowerOfTwoCode(amax, 464f, inclusive: true)
                    : PowerOfTwoCode(amax, E4M3Max, inclusive: true);
                scales[i] = code;
                return E8M0.ToFloat(code);
            }
        }
    }

    /// <summary>
    /// Smallest E8M0 code k (clamped to [0, 254]) with amax &lt;= bound * 2^(k-127) (or &lt; when not inclusive),
    /// evaluated exactly: bound has few significant bits, so bound * 2^(k-127) is exact (or overflows to +inf).
    /// </summary>
    internal static byte PowerOfTwoCode(float amax, float bound, bool inclusive)
    {
        int k = E8M0.CeilLog2Code(amax / bound);
        bool Fits(int code)
        {
            float lim = bound * E8M0.ToFloat((byte)code);
            return inclusive ? amax <= lim : amax < lim;
        }
        while (k < 254 && !Fits(k)) k++;
        while (k > 0 && Fits(k - 1)) k--;
        return (byte)k;
    }

    /// <summary>
    /// FP4 E2M1 group quantization with E8M0 scales per <paramref name="groupSize"/> columns (MXFP4-like).
    /// </summary>
    /// <param name="input">Raw weight [rows, cols] in <paramref name="inputFormat"/>.</param>
    /// <param name="inputFormat">F32 or BF16.</param>
    /// <param name="rows">Weight rows.</param>
    /// <param name="cols">Logical weight columns (even).</param>
    /// <param name="scales">E8M0 scales [rows, ceil(cols/groupSize)]: read in Reuse mode, written when replaced and in Canonical mode.</param>
    /// <param name="groupSize">Columns per scale (32); must be even.</param>
    /// <param name="mode">Reuse the given scales or compute canonical ones.</param>
    /// <param name="packed">Packed output [rows, cols/2]: low nibble = even column.</param>
    /// <param name="options">Threads, non-finite scale policy and power-of-two rule.</param>
    /// <returns>The (row, group) pairs whose scale was replaced (Reuse mode only).</returns>
    public static unsafe QuantizeReport Fp4(ReadOnlySpan<byte> input, FloatFormat inputFormat, int rows, int cols, Span<byte> scales,
        int groupSize, ScaleMode mode, Span<byte> packed, KernelOptions options = default)
    {
        BlockDequant.CheckDims(rows, cols);
        if (cols % 2 != 0) throw new ArgumentException($"FP4 weight [{rows}, {cols}] has an odd column count; two values are packed per byte.");
        if (groupSize <= 0 || groupSize % 2 != 0) throw new ArgumentException($"FP4 group size {groupSize} must be positive and even.", nameof(groupSize));
        int groups = (cols + groupSize - 1) / groupSize;
        int ib = BlockDequant.BytesPerElement(inputFormat);
        BlockDequant.CheckLength(input.Length, (long)rows * cols * ib, $"{inputFormat} input buffer", $"weight [{rows}, {cols}]");
        if (scales.Length != (long)rows * groups)
            throw new ArgumentException(
                $"scale grid of {scales.Length} E8M0 scales does not fit weight [{rows}, {cols}] with group size {groupSize} (expected [{rows}, {groups}]).");
        BlockDequant.CheckLength(packed.Length, (long)rows * (cols / 2), "FP4 packed buffer", $"weight [{rows}, {cols}] packs to [{rows}, {cols / 2}]");
        if (rows == 0 || cols == 0) return new QuantizeReport([]);

        int rowsPerTask = Math.Max(1, Math.Min(64, rows / (BlockDequant.Threads(options) * 4)));
        int tasks = (rows + rowsPerTask - 1) / rowsPerTask;
        List<(int, int)>[] changed;
        fixed (byte* pin = input)
        fixed (byte* psc = scales)
        fixed (byte* ppk = packed)
        {
            var q = new Fp4GroupQuantizer(pin, psc, ppk, (rows, cols, groupSize, rowsPerTask), inputFormat, mode, options);
            BlockDequant.Run(tasks, options, q.Rows);
            changed = q.Changed;
        }
        var all = new List<(int BlockRow, int BlockCol)>();
        foreach (var l in changed) all.AddRange(l);
        return new QuantizeReport(all);
    }

    internal static int Fp4Code(float q)
    {
        int c = Fp4E2M1.MagnitudeCode(MathF.Abs(q));
        return float.IsNegative(q) ? c | 8 : c;
    }

    internal static byte CanonicalFp4(float amax, KernelOptions options) =>
        amax == 0f ? (byte)127
        : options.IdempotentPowerOfTwoScales ? PowerOfTwoCode(amax, 7f, inclusive: false)
        : PowerOfTwoCode(amax, Fp4E2M1.MaxFinite, inclusive: true);
}
