namespace Mtp.Quant;

/// <summary>
/// FP8 block kernels for a <see cref="BlockSize"/> with <see cref="BlockSize.RowChunk"/>: the weight is a stack of
/// chunks of <c>RowChunk</c> rows, each quantized alone with ordinary blocks, so chunk <c>c</c> is weight rows
/// <c>[c*R, (c+1)*R)</c> with scale rows <c>[c*g, (c+1)*g)</c> (<c>g = ceil(R / block.Rows)</c>), both contiguous. Each
/// method runs the unchunked kernel on every chunk in turn; an unchunked block goes to the kernel directly.
/// </summary>
public static class RowChunkedBlocks
{
    /// <summary><see cref="BlockDequant.Fp8"/> over row chunks (same arguments and output).</summary>
    /// <exception cref="ArgumentException">A span length does not match the shapes, or the rows are not whole chunks.</exception>
    /// <exception cref="InvalidDataException">A scale is not finite and non-finite scales are not allowed.</exception>
    public static void Dequantize(ReadOnlySpan<byte> codes, int rows, int cols, ReadOnlySpan<byte> scales, ScaleFormat scaleFormat,
        BlockSize block, Span<byte> output, FloatFormat outputFormat, KernelOptions options = default)
    {
        if (block.RowChunk == 0) { BlockDequant.Fp8(codes, rows, cols, scales, scaleFormat, block, output, outputFormat, options); return; }
        var c = Chunks.Of(rows, cols, block, BlockDequant.BytesPerScale(scaleFormat), scales.Length);
        int ob = BlockDequant.BytesPerElement(outputFormat);
        Chunks.Length(codes.Length, (long)rows * cols, "FP8 code buffer", rows, cols);
        Chunks.Length(output.Length, (long)rows * cols * ob, $"{outputFormat} output buffer", rows, cols);
        for (int i = 0; i < c.Count; i++)
            BlockDequant.Fp8(codes.Slice(i * c.Codes, c.Codes), c.Rows, cols, scales.Slice(i * c.ScaleBytes, c.ScaleBytes), scaleFormat, c.Inner,
                output.Slice(i * c.Codes * ob, c.Codes * ob), outputFormat, options);
    }

    /// <summary>
    /// <see cref="BlockQuant.Fp8"/> over row chunks (same arguments); the report's block rows count in the whole grid
    /// (chunk <c>c</c>'s block row <c>b</c> is <c>c*g + b</c>).
    /// </summary>
    /// <exception cref="ArgumentException">A span length does not match the shapes, or the rows are not whole chunks.</exception>
    /// <exception cref="InvalidDataException">A weight or reused scale is not finite (see <see cref="BlockQuant.Fp8"/>).</exception>
    public static QuantizeReport Quantize(ReadOnlySpan<byte> input, FloatFormat inputFormat, int rows, int cols, Span<byte> scales,
        ScaleFormat scaleFormat, BlockSize block, ScaleMode mode, Span<byte> codes, KernelOptions options = default)
    {
        if (block.RowChunk == 0) return BlockQuant.Fp8(input, inputFormat, rows, cols, scales, scaleFormat, block, mode, codes, options);
        var c = Chunks.Of(rows, cols, block, BlockDequant.BytesPerScale(scaleFormat), scales.Length);
        int ib = BlockDequant.BytesPerElement(inputFormat);
        Chunks.Length(input.Length, (long)rows * cols * ib, $"{inputFormat} input buffer", rows, cols);
        Chunks.Length(codes.Length, (long)rows * cols, "FP8 code buffer", rows, cols);
        var changed = new List<(int, int)>();
        for (int i = 0; i < c.Count; i++)
        {
            var r = BlockQuant.Fp8(input.Slice(i * c.Codes * ib, c.Codes * ib), inputFormat, c.Rows, cols, scales.Slice(i * c.ScaleBytes, c.ScaleBytes),
                scaleFormat, c.Inner, mode, codes.Slice(i * c.Codes, c.Codes), options);
            foreach (var (br, bc) in r.ChangedBlocks) changed.Add((i * c.GridRows + br, bc));
        }
        return new QuantizeReport(changed);
    }

    /// <summary><see cref="DequantEquality.Fp8"/> over row chunks: whether the codes dequantize to exactly <paramref name="expected"/>.</summary>
    /// <exception cref="ArgumentException">A span length does not match the shapes, or the rows are not whole chunks.</exception>
    public static bool DequantizesTo(ReadOnlySpan<byte> codes, int rows, int cols, ReadOnlySpan<byte> scales, ScaleFormat scaleFormat, BlockSize block,
        ReadOnlySpan<byte> expected, FloatFormat format)
    {
        if (block.RowChunk == 0) return DequantEquality.Fp8(codes, rows, cols, scales, scaleFormat, block, expected, format);
        var c = Chunks.Of(rows, cols, block, BlockDequant.BytesPerScale(scaleFormat), scales.Length);
        int ob = BlockDequant.BytesPerElement(format);
        Chunks.Length(codes.Length, (long)rows * cols, "FP8 code buffer", rows, cols);
        Chunks.Length(expected.Length, (long)rows * cols * ob, $"{format} values", rows, cols);
        for (int i = 0; i < c.Count; i++)
            if (!DequantEquality.Fp8(codes.Slice(i * c.Codes, c.Codes), c.Rows, cols, scales.Slice(i * c.ScaleBytes, c.ScaleBytes), scaleFormat, c.Inner,
                    expected.Slice(i * c.Codes * ob, c.Codes * ob), format))
                return false;
        return true;
    }

    /// <summary><see cref="ExactEncode.Fp8"/> over row chunks (BF16 input, E8M0 scales); false as soon as one chunk is not exact.</summary>
    /// <exception cref="ArgumentException">A span length does not match the shapes, or the rows are not whole chunks.</exception>
    public static bool ExactEncodeFp8(ReadOnlySpan<byte> input, int rows, int cols, ReadOnlySpan<byte> scales, BlockSize block, Span<byte> codes,
        KernelOptions options = default)
    {
        if (block.RowChunk == 0) return ExactEncode.Fp8(input, rows, cols, scales, block, codes, options);
        var c = Chunks.Of(rows, cols, block, 1, scales.Length);
        Chunks.Length(input.Length, (long)rows * cols * 2, "BF16 input buffer", rows, cols);
        Chunks.Length(codes.Length, (long)rows * cols, "FP8 code buffer", rows, cols);
        for (int i = 0; i < c.Count; i++)
            if (!ExactEncode.Fp8(input.Slice(i * c.Codes * 2, c.Codes * 2), c.Rows, cols, scales.Slice(i * c.ScaleBytes, c.ScaleBytes), c.Inner,
                    codes.Slice(i * c.Codes, c.Codes), options))
                return false;
        return true;
    }

    /// <summary>How a weight splits: <c>Count</c> chunks of <c>Rows</c> rows (<c>Codes</c> elements, <c>GridRows</c> scale rows, <c>ScaleBytes</c> bytes).</summary>
    readonly record struct Chunks(int Count, int Rows, int Codes, int GridRows, int ScaleBytes, BlockSize Inner)
    {
        public static Chunks Of(int rows, int cols, BlockSize block, int scaleBytes, int scaleLength)
        {
            BlockDequant.CheckDims(rows, cols);
            BlockSize inner = block.Unchunked;
            BlockDequant.CheckBlock(inner);
            int r = block.RowChunk;
            if (r < 0 || rows % r != 0)
                throw new ArgumentException($"weight [{rows}, {cols}] is not a whole number of {r}-row chunks (block {block}).");
            var (gr, gc) = block.GridFor(rows, cols);
            if (scaleLength != (long)gr * gc * scaleBytes)
                throw new ArgumentException(
                    $"scale grid of {scaleLength / scaleBytes} scales ({scaleLength} bytes) does not fit weight [{rows}, {cols}] with block {block} (expected [{gr}, {gc}] = {(long)gr * gc} scales).");
            int g = inner.GridFor(r, cols).Rows;
            return new Chunks(rows / r, r, checked(r * cols), g, checked(g * gc * scaleBytes), inner);
        }

        public static void Length(int actual, long expected, string what, int rows, int cols) =>
            BlockDequant.CheckLength(actual, expected, what, $"weight [{rows}, {cols}]");
    }
}
