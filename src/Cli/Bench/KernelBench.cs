using System.Diagnostics;
using Mtp.Quant;

namespace Mtp.Cli.Bench;

/// <summary>
/// Throughput of the block kernels, in GB/s (10^9 bytes per second). Dequant kernels and the memcpy baseline count
/// OUTPUT bytes written (BF16: 2 bytes per element); the quantizer counts INPUT bytes read (BF16: 2 bytes per element).
/// </summary>
/// <param name="Fp8Bf16F32ScaleGbps">FP8 E4M3 -> BF16 with F32 block scales (128x128).</param>
/// <param name="Fp8Bf16E8M0Gbps">FP8 E4M3 -> BF16 with E8M0 block scales (128x128).</param>
/// <param name="Fp4Bf16Gbps">Packed FP4 E2M1 -> BF16 with E8M0 group-32 scales.</param>
/// <param name="Bf16Fp8Gbps">BF16 -> FP8 E4M3 quantization, Reuse mode with F32 scales (input bytes).</param>
/// <param name="MemcpyGbps">Plain copy of a buffer of the BF16 output size, split over the same threads.</param>
/// <param name="Fp4ExactGbps">BF16 -> FP4 exact re-encode with given E8M0 scales plus the bit-for-bit check
/// (<see cref="ExactEncode.Fp4Verified"/>), rows split over the same threads (BF16 input bytes).</param>
/// <param name="Fp8ExactGbps">The same for FP8 E4M3 with E8M0 128x128 block scales.</param>
/// <param name="Threads">Threads used.</param>
/// <param name="Rows">Weight rows.</param>
/// <param name="Cols">Weight columns.</param>
public sealed record KernelBenchResult(double Fp8Bf16F32ScaleGbps, double Fp8Bf16E8M0Gbps, double Fp4Bf16Gbps, double Bf16Fp8Gbps,
    double MemcpyGbps, int Threads, int Rows, int Cols, double Fp4ExactGbps = 0, double Fp8ExactGbps = 0);

/// <summary>Measures the kernels on one set of buffers (see <see cref="KernelBenchResult"/> for the units).</summary>
public static class KernelBench
{
    /// <summary>Default shape: 4096 x 4096 (16 Mi elements, 32 MiB of BF16 output: well beyond the caches, so memory bound like real tensors).</summary>
    public const int DefaultRows = 4096;

    /// <summary>Default columns.</summary>
    public const int DefaultCols = 4096;

    /// <summary>
    /// Runs every kernel once to warm up, then repeatedly for at least <paramref name="minTimePerKernel"/>, and keeps the best run.
    /// </summary>
    /// <param name="rows">Weight rows (even).</param>
    /// <param name="cols">Weight columns (a multiple of 32).</param>
    /// <param name="threads">Threads (0 = all processors).</param>
    /// <param name="minTimePerKernel">Minimum measuring time per kernel.</param>
    public static KernelBenchResult Run(int rows, int cols, int threads, TimeSpan minTimePerKernel)
    {
        if (rows <= 0 || cols <= 0 || cols % 32 != 0)
            throw new ArgumentException($"bench shape [{rows}, {cols}] needs positive rows and columns that are a multiple of 32.");
        if (threads <= 0) threads = Environment.ProcessorCount;
        var opt = new KernelOptions { MaxThreads = threads };
        var rng = new Random(42);
        long n = (long)rows * cols;
        var block = BlockSize.Fp8Default;
        var (gr, gc) = block.GridFor(rows, cols);

        var codes = new byte[n];
        rng.NextBytes(codes);
        for (long i = 0; i < n; i++) if ((codes[i] & 0x7F) == 0x7F) codes[i] ^= 1;
        var f32Scales = new byte[gr * gc * 4];
        for (int i = 0; i < gr * gc; i++) BitConverter.TryWriteBytes(f32Scales.AsSpan(i * 4), (float)(rng.NextDouble() * 1e-3 + 1e-4));
        var e8Scales = new byte[gr * gc];
        for (int i = 0; i < e8Scales.Length; i++) e8Scales[i] = (byte)rng.Next(110, 125);
        var packed = new byte[n / 2];
        rng.NextBytes(packed);
        var fp4Scales = new byte[n / 32];
        for (int i = 0; i < fp4Scales.Length; i++) fp4Scales[i] = (byte)rng.Next(110, 125);
        var bf16 = new byte[n * 2];
        var bf16Copy = new byte[n * 2];
        var qCodes = new byte[n];
        var qScales = (byte[])f32Scales.Clone();

        BlockDequant.Fp8(codes, rows, cols, f32Scales, ScaleFormat.F32, block, bf16, FloatFormat.BF16, opt);
        double outBytes = n * 2.0;

        double fp8F32 = Measure(outBytes, minTimePerKernel,
            () => BlockDequant.Fp8(codes, rows, cols, f32Scales, ScaleFormat.F32, block, bf16, FloatFormat.BF16, opt));
        double quant = Measure(outBytes, minTimePerKernel,
            () => BlockQuant.Fp8(bf16, FloatFormat.BF16, rows, cols, qScales, ScaleFormat.F32, block, ScaleMode.Reuse, qCodes, opt));
        double fp8E8 = Measure(outBytes, minTimePerKernel,
            () => BlockDequant.Fp8(codes, rows, cols, e8Scales, ScaleFormat.E8M0, block, bf16, FloatFormat.BF16, opt));
        double fp4 = Measure(outBytes, minTimePerKernel,
            () => BlockDequant.Fp4(packed, rows, cols, fp4Scales, 32, bf16, FloatFormat.BF16, opt));
        double copy = Measure(outBytes, minTimePerKernel, () => ParallelCopy(bf16, bf16Copy, threads));

        // Exact re-encoding (+ verification) of weights that were dequantized from these very codes.
        var fp4Back = new byte[n / 2];
        BlockDequant.Fp4(packed, rows, cols, fp4Scales, 32, bf16, FloatFormat.BF16, opt);
        double fp4Exact = Measure(outBytes, minTimePerKernel, () =>
        {
            if (!ExactEncode.Fp4Verified(bf16, rows, cols, fp4Scales, 32, fp4Back, opt))
                throw new InvalidOperationException("exact FP4 re-encoding failed on its own dequantization");
        });
        BlockDequant.Fp8(codes, rows, cols, e8Scales, ScaleFormat.E8M0, block, bf16, FloatFormat.BF16, opt);
        double fp8Exact = Measure(outBytes, minTimePerKernel, () =>
        {
            if (!ExactEncode.Fp8Verified(bf16, rows, cols, e8Scales, block, qCodes, opt))
                throw new InvalidOperationException("exact FP8 re-encoding failed on its own dequantization");
        });
        return new KernelBenchResult(fp8F32, fp8E8, fp4, quant, copy, threads, rows, cols, fp4Exact, fp8Exact);
    }

    static void ParallelCopy(byte[] src, byte[] dst, int threads)
    {
        long chunk = (src.LongLength + threads - 1) / threads;
        Parallel.For(0, threads, new ParallelOptions { MaxDegreeOfParallelism = threads }, t =>
        {
            long a = t * chunk, b = Math.Min(src.LongLength, a + chunk);
            if (b > a) src.AsSpan((int)a, (int)(b - a)).CopyTo(dst.AsSpan((int)a, (int)(b - a)));
        });
    }

    static double Measure(double bytes, TimeSpan minTime, Action kernel)
    {
        kernel();
        double best = double.MaxValue;
        var total = Stopwatch.StartNew();
        int runs = 0;
        while (total.Elapsed < minTime || runs < 3)
        {
            long t0 = Stopwatch.GetTimestamp();
            kernel();
            best = Math.Min(best, Stopwatch.GetElapsedTime(t0).TotalSeconds);
            runs++;
        }
        return bytes / best / 1e9;
    }
}
