using System.Runtime.InteropServices;

namespace Mtp.Quant;

/// <summary>
/// Block dequantization kernels: FP8 E4M3 with a 2-D scale grid, and packed FP4 E2M1 with E8M0 group scales.
/// Every output element is <c>float(q) * scale</c> computed in binary32 and rounded once to the output format
/// (bit-identical to PyTorch's <c>(q.float() * scale).to(torch.bfloat16)</c>; BF16 scales are widened first).
/// </summary>
public static class BlockDequant
{
    /// <summary>Bytes per element of an output/input format.</summary>
    public static int BytesPerElement(FloatFormat format) => format == FloatFormat.F32 ? 4 : 2;

    /// <summary>Bytes per scale of a scale format.</summary>
    public static int BytesPerScale(ScaleFormat format) => format switch
    {
        ScaleFormat.F32 => 4,
        ScaleFormat.BF16 => 2,
        _ => 1,
    };

    /// <summary>
    /// Checks that a scale grid of <paramref name="gridRows"/> x <paramref name="gridCols"/> (as declared in a header)
    /// fits a weight of <paramref name="rows"/> x <paramref name="cols"/> with <paramref name="block"/>;
    /// throws <see cref="ArgumentException"/> naming both shapes otherwise.
    /// </summary>
    public static void ValidateScaleGrid(int rows, int cols, int gridRows, int gridCols, BlockSize block)
    {
        CheckBlock(block);
        var (gr, gc) = block.GridFor(rows, cols);
        if (gr != gridRows || gc != gridCols)
            throw new ArgumentException(
                $"scale grid [{gridRows}, {gridCols}] does not fit weight [{rows}, {cols}] with block {block} (expected [{gr}, {gc}]).");
    }

    internal static void CheckBlock(BlockSize block)
    {
        if (block.Rows <= 0 || block.Cols <= 0)
            throw new ArgumentException($"block size {block} must be positive.", nameof(block));
        if (block.RowChunk != 0) // the kernels index one grid from row 0; chunked grids go through RowChunkedBlocks
            throw new ArgumentException($"block {block} is row-chunked: use RowChunkedBlocks.", nameof(block));
    }

    internal static void CheckDims(int rows, int cols)
    {
        if (rows < 0 || cols < 0) throw new ArgumentException($"weight shape [{rows}, {cols}] has a negative dimension.");
    }

    internal static void CheckLength(int actual, long expected, string what, string detail)
    {
        if (actual != expected)
            throw new ArgumentException($"{what} has {actual} bytes, expected {expected} ({detail}).");
    }

    /// <summary>Reads scale <paramref name="index"/> of a raw grid as binary32.</summary>
    internal static float ReadScale(ReadOnlySpan<byte> scales, ScaleFormat format, int index) => format switch
    {
        ScaleFormat.F32 => MemoryMarshal.Read<float>(scales.Slice(index * 4, 4)),
        ScaleFormat.BF16 => BFloat16.ToFloat(MemoryMarshal.Read<ushort>(scales.Slice(index * 2, 2))),
        _ => E8M0.ToFloat(scales[index]),
    };

    internal static int Threads(KernelOptions options) =>
        options.MaxThreads > 0 ? options.MaxThreads : Environment.ProcessorCount;

    static void CheckScaleFinite(float s, int br, int bc, string what)
    {
        if (!float.IsFinite(s))
            throw new InvalidDataException($"{what} of block [{br}, {bc}] is {s}: a scale must be finite, so the file is damaged (fetch or convert it again)");
    }

    /// <summary>
    /// FP8 E4M3 block dequantization: <c>out[i, j] = float(codes[i, j]) * scale[i / b0, j / b1]</c>.
    /// </summary>
    /// <param name="codes">E4M3 codes, row-major [rows, cols].</param>
    /// <param name="rows">Weight rows.</param>
    /// <param name="cols">Weight columns.</param>
    /// <param name="scales">Raw scale grid [ceil(rows/b0), ceil(cols/b1)] in <paramref name="scaleFormat"/>.</param>
    /// <param name="scaleFormat">Storage format of the scales.</param>
    /// <param name="block">Block shape (b0 x b1); edge blocks are partial.</param>
    /// <param name="output">Raw output [rows, cols] in <paramref name="outputFormat"/>.</param>
    /// <param name="outputFormat">F32 or BF16 (rounded to nearest even from the F32 product).</param>
    /// <param name="options">Threads and non-finite scale policy.</param>
    /// <exception cref="ArgumentException">A span length does not match the shapes.</exception>
    /// <exception cref="InvalidDataException">A scale is NaN/infinite (E8M0 0xFF) and non-finite scales are not allowed.</exception>
    public static unsafe void Fp8(ReadOnlySpan<byte> codes, int rows, int cols, ReadOnlySpan<byte> scales, ScaleFormat scaleFormat,
        BlockSize block, Span<byte> output, FloatFormat outputFormat, KernelOptions options = default)
    {
        CheckDims(rows, cols);
        CheckBlock(block);
        var (gr, gc) = block.GridFor(rows, cols);
        string shapes = $"weight [{rows}, {cols}]";
        CheckLength(codes.Length, (long)rows * cols, "FP8 code buffer", shapes);
        int sb = BytesPerScale(scaleFormat);
        if (scales.Length != (long)gr * gc * sb)
            throw new ArgumentException(
                $"scale grid of {scales.Length / sb} {scaleFormat} scales ({scales.Length} bytes) does not fit weight [{rows}, {cols}] with block {block} (expected [{gr}, {gc}] = {(long)gr * gc} scales, {(long)gr * gc * sb} bytes).");
        int ob = BytesPerElement(outputFormat);
        CheckLength(output.Length, (long)rows * cols * ob, $"{outputFormat} output buffer", shapes);
        if (rows == 0 || cols == 0) return;

        var sf = new float[gr * gc];
        for (int i = 0; i < sf.Length; i++)
        {
            sf[i] = ReadScale(scales, scaleFormat, i);
            if (!options.AllowNonFiniteScales) CheckScaleFinite(sf[i], i / gc, i % gc, "scale");
        }

        fixed (byte* pc = codes)
        fixed (byte* po = output)
        {
            byte* c = pc, o = po;
            int b0 = block.Rows, b1 = block.Cols;
            var fmt = outputFormat;
            // Work unit: one row-block (or a slice of rows when there are few row-blocks).
            // (One thread: whole row-blocks, so that the Vector512 tables serve as many rows as possible.)
            int rowsPerTask = Threads(options) == 1 ? b0 : Math.Min(b0, Math.Max(1, rows / (Threads(options) * 4)));
            int tasks = (rows + rowsPerTask - 1) / rowsPerTask;
            void Rows(int r0, int r1)
            {
                for (int r = r0; r < r1; r++)
                {
                    int br = r / b0;
                    byte* crow = c + (long)r * cols;
                    byte* orow = o + (long)r * cols * ob;
                    for (int bc = 0; bc < gc; bc++)
                    {
                        int j0 = bc * b1, n = Math.Min(b1, cols - j0);
                        VectorKernels.Fp8Row(crow + j0, n, sf[br * gc + bc], orow + (long)j0 * ob, fmt);
                    }
                }
            }
            void Body(int t)
            {
                int r0 = t * rowsPerTask, r1 = Math.Min(rows, r0 + rowsPerTask);
                if (fmt != FloatFormat.BF16 || !VectorWidth.Use512) { Rows(r0, r1); return; }
                // Vector512: per row of blocks, tables of each scale's 256 outputs, worth building when they serve enough codes.
                for (int ra = r0; ra < r1;)
                {
                    int br = ra / b0, rb = Math.Min(r1, (br + 1) * b0);
                    if (Math.Min(b1, cols) >= 64 && (long)(rb - ra) * Math.Min(b1, cols) >= Fp8TableMinCodes)
                        fixed (float* ps = &sf[br * gc]) VectorKernels.Fp8RowsBf16(c, cols, ra, rb, gc, b1, ps, (ushort*)o);
                    else Rows(ra, rb);
                    ra = rb;
                }
            }
            Run(tasks, options, Body);
        }
    }

    /// <summary>
    /// FP4 E2M1 group dequantization (DeepSeek-V4 routed experts):
    /// <c>out[o, c] = fp4(nibble(o, c)) * 2^(scales[o, c / groupSize] - 127)</c>.
    /// </summary>
    /// <param name="packed">Packed codes [rows, cols/2]: low nibble = even column, high nibble = odd column.</param>
    /// <param name="rows">Weight rows.</param>
    /// <param name="cols">Logical weight columns (even).</param>
    /// <param name="scales">E8M0 scales [rows, ceil(cols/groupSize)].</param>
    /// <param name="groupSize">Columns per scale (32 for DeepSeek-V4); must be even.</param>
    /// <param name="output">Raw output [rows, cols] in <paramref name="outputFormat"/>.</param>
    /// <param name="outputFormat">F32 or BF16.</param>
    /// <param name="options">Threads and non-finite scale policy.</param>
    /// <exception cref="ArgumentException">Odd column count or group size, or a span length does not match.</exception>
    /// <exception cref="InvalidDataException">A scale is 0xFF (NaN) and non-finite scales are not allowed.</exception>
    public static unsafe void Fp4(ReadOnlySpan<byte> packed, int rows, int cols, ReadOnlySpan<byte> scales, int groupSize,
        Span<byte> output, FloatFormat outputFormat, KernelOptions options = default)
    {
        CheckDims(rows, cols);
        if (cols % 2 != 0) throw new ArgumentException($"FP4 weight [{rows}, {cols}] has an odd column count; two values are packed per byte.");
        if (groupSize <= 0 || groupSize % 2 != 0) throw new ArgumentException($"FP4 group size {groupSize} must be positive and even.", nameof(groupSize));
        int groups = (cols + groupSize - 1) / groupSize;
        CheckLength(packed.Length, (long)rows * (cols / 2), "FP4 packed buffer", $"weight [{rows}, {cols}] packs to [{rows}, {cols / 2}]");
        if (scales.Length != (long)rows * groups)
            throw new ArgumentException(
                $"scale grid of {scales.Length} E8M0 scales does not fit weight [{rows}, {cols}] with group size {groupSize} (expected [{rows}, {groups}]).");
        int ob = BytesPerElement(outputFormat);
        CheckLength(output.Length, (long)rows * cols * ob, $"{outputFormat} output buffer", $"weight [{rows}, {cols}]");
        if (rows == 0 || cols == 0) return;
        if (!options.AllowNonFiniteScales)
        {
            int bad = scales.IndexOf(E8M0.NaN);
            if (bad >= 0)
                throw new InvalidDataException($"E8M0 scale of group [{bad / groups}, {bad % groups}] is 0xFF (NaN): a scale must be finite, so the file is damaged (fetch or convert it again)");
        }

        fixed (byte* pp = packed)
        fixed (byte* ps = scales)
        fixed (byte* po = output)
        {
            byte* p = pp, s = ps, o = po;
            var fmt = outputFormat;
            int rowsPerTask = Math.Max(1, Math.Min(64, rows / (Threads(options) * 4)));
            int tasks = (rows + rowsPerTask - 1) / rowsPerTask;
            int half = groupSize / 2;
            void Body(int t)
            {
                int r0 = t * rowsPerTask, r1 = Math.Min(rows, r0 + rowsPerTask);
                for (int r = r0; r < r1; r++)
                {
                    byte* prow = p + (long)r * (cols / 2);
                    byte* orow = o + (long)r * cols * ob;
                    byte* srow = s + (long)r * groups;
                    if (VectorWidth.Use512 && groupSize % 32 == 0)
                    {
                        VectorKernels.Fp4Row512(prow, cols, srow, groupSize, orow, fmt);
                        continue;
                    }
                    for (int g = 0; g < groups; g++)
                    {
                        int c0 = g * groupSize, pairs = Math.Min(half, (cols - c0) / 2);
                        VectorKernels.Fp4Run(prow + c0 / 2, pairs, E8M0.ToFloat(srow[g]), orow + (long)c0 * ob, fmt);
                    }
                }
            }
            Run(tasks, options, Body);
        }
    }

    /// <summary>Codes a block must serve (rows times columns, with at least 64 columns) before the Vector512 path builds its output table.</summary>
    const int Fp8TableMinCodes = 1024;

    internal static void Run(int tasks, KernelOptions options, Action<int> body)
    {
        int threads = Threads(options);
        if (threads <= 1 || tasks <= 1)
        {
            for (int t = 0; t < tasks; t++) body(t);
            return;
        }
        Parallel.For(0, tasks, new ParallelOptions { MaxDegreeOfParallelism = threads }, body);
    }
}
