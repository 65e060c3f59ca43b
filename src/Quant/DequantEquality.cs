namespace Mtp.Quant;

/// <summary>
/// Whether quantized codes dequantize to given raw floats bit for bit, without materializing the whole dequantized matrix:
/// the work goes in row chunks of about <see cref="ChunkBytes"/> through one reused per-thread buffer that stays in cache,
/// and stops at the first chunk that differs. Used to prove a weight is unchanged before its original codes are written back.
/// </summary>
public static class DequantEquality
{
    /// <summary>Output bytes dequantized per chunk (fits a core's L2 cache).</summary>
    public const int ChunkBytes = 512 << 10;

    [ThreadStatic] static byte[]? _scratch;

    static Span<byte> Scratch(long bytes)
    {
        if (_scratch == null || _scratch.Length < bytes) _scratch = new byte[Math.Max(bytes, ChunkBytes)];
        return _scratch.AsSpan(0, checked((int)bytes));
    }

    /// <summary>
    /// True when <see cref="BlockDequant.Fp8"/> of the codes and scales gives exactly <paramref name="expected"/> (raw
    /// <paramref name="format"/> values, [rows, cols]). Non-finite scales are allowed (they simply do not compare equal).
    /// </summary>
    /// <exception cref="ArgumentException">A span length does not match the shapes.</exception>
    public static bool Fp8(ReadOnlySpan<byte> codes, int rows, int cols, ReadOnlySpan<byte> scales, ScaleFormat scaleFormat, BlockSize block,
        ReadOnlySpan<byte> expected, FloatFormat format)
    {
        int ob = BlockDequant.BytesPerElement(format), sb = BlockDequant.BytesPerScale(scaleFormat);
        var (gr, gc) = block.GridFor(rows, cols);
        if (codes.Length != (long)rows * cols || expected.Length != (long)rows * cols * ob || scales.Length != (long)gr * gc * sb || block.Rows <= 0)
        {
            // Wrong shapes: let the kernel name the mismatch.
            BlockDequant.Fp8(codes, rows, cols, scales, scaleFormat, block, Span<byte>.Empty, format, new KernelOptions { MaxThreads = 1, AllowNonFiniteScales = true });
            throw new ArgumentException($"output of {expected.Length} bytes does not fit weight [{rows}, {cols}] in {format}");
        }
        long rowBytes = (long)cols * ob;
        // Whole row-blocks per chunk, or (when one row-block exceeds the chunk) the largest divisor of the block height that
        // fits, so that no chunk straddles two row-blocks and the scratch stays in cache.
        int step = (int)Math.Min(rows, Math.Max(1, ChunkBytes / Math.Max(1, rowBytes) / block.Rows) * block.Rows);
        if ((long)block.Rows * rowBytes > ChunkBytes)
        {
            step = 1;
            for (int d = block.Rows; d > 1; d--)
                if (block.Rows % d == 0 && d * rowBytes <= ChunkBytes) { step = d; break; }
            step = Math.Min(step, rows);
        }
        var k = new KernelOptions { MaxThreads = 1, AllowNonFiniteScales = true };
        for (int r0 = 0; r0 < rows; r0 += step)
        {
            int rc = Math.Min(step, rows - r0);
            int g0 = r0 / block.Rows, gn = (r0 + rc - 1) / block.Rows - g0 + 1;
            Span<byte> tmp = Scratch(rc * rowBytes);
            BlockDequant.Fp8(codes.Slice(r0 * cols, rc * cols), rc, cols, scales.Slice(g0 * gc * sb, gn * gc * sb), scaleFormat, block, tmp, format, k);
            if (!tmp.SequenceEqual(expected.Slice((int)(r0 * rowBytes), tmp.Length))) return false;
        }
        return true;
    }

    /// <summary>True when <see cref="BlockDequant.Fp4"/> of the packed codes and scales gives exactly <paramref name="expected"/>.</summary>
    /// <exception cref="ArgumentException">Odd columns or group size, or a span length does not match the shapes.</exception>
    public static bool Fp4(ReadOnlySpan<byte> packed, int rows, int cols, ReadOnlySpan<byte> scales, int groupSize, ReadOnlySpan<byte> expected, FloatFormat format)
    {
        int ob = BlockDequant.BytesPerElement(format);
        int groups = groupSize > 0 ? (cols + groupSize - 1) / groupSize : 0;
        if (cols % 2 != 0 || groupSize <= 0 || groupSize % 2 != 0 || packed.Length != (long)rows * (cols / 2) || scales.Length != (long)rows * groups
            || expected.Length != (long)rows * cols * ob)
        {
            BlockDequant.Fp4(packed, rows, cols, scales, groupSize, Span<byte>.Empty, format, new KernelOptions { MaxThreads = 1, AllowNonFiniteScales = true });
            throw new ArgumentException($"output of {expected.Length} bytes does not fit weight [{rows}, {cols}] in {format}");
        }
        long rowBytes = (long)cols * ob;
        int step = (int)Math.Min(rows, Math.Max(1, ChunkBytes / Math.Max(1, rowBytes)));
        var k = new KernelOptions { MaxThreads = 1, AllowNonFiniteScales = true };
        for (int r0 = 0; r0 < rows; r0 += step)
        {
            int rc = Math.Min(step, rows - r0);
            Span<byte> tmp = Scratch(rc * rowBytes);
            BlockDequant.Fp4(packed.Slice(r0 * (cols / 2), rc * (cols / 2)), rc, cols, scales.Slice(r0 * groups, rc * groups), groupSize, tmp, format, k);
            if (!tmp.SequenceEqual(expected.Slice((int)(r0 * rowBytes), tmp.Length))) return false;
        }
        return true;
    }
}
