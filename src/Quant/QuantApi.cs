namespace Mtp.Quant;

/// <summary>Plain floating-point element formats the kernels read and write.</summary>
public enum FloatFormat
{
    /// <summary>IEEE binary32, little-endian.</summary>
    F32,
    /// <summary>bfloat16 (upper half of binary32), little-endian.</summary>
    BF16,
}

/// <summary>How a block scale is stored.</summary>
public enum ScaleFormat
{
    /// <summary>binary32 multiplier.</summary>
    F32,
    /// <summary>bfloat16 multiplier.</summary>
    BF16,
    /// <summary>Unsigned power-of-two exponent byte (OCP E8M0): 2^(e-127); 0xFF is NaN.</summary>
    E8M0,
}

/// <summary>
/// Block shape of a 2-D scale grid: one scale per <c>Rows x Cols</c> tile. With <see cref="RowChunk"/> the weight is cut
/// into chunks of that many rows, each blocked on its own (its grid restarts at the chunk's first row); the kernels take
/// unchunked blocks only, and <see cref="RowChunkedBlocks"/> runs them chunk by chunk.
/// </summary>
public readonly record struct BlockSize(int Rows, int Cols)
{
    /// <summary>Rows per independently blocked chunk (MiMo-V2-Flash's full-attention k_proj: one KV head); 0 = none.</summary>
    public int RowChunk { get; init; }
    /// <summary>DeepSeek/Qwen FP8 default.</summary>
    public static BlockSize Fp8Default => new(128, 128);
    /// <summary>
    /// One scale per row, whatever the row's length (compressed-tensors' per-channel FP8): a block one row high and
    /// 2^30 columns wide (wider than any weight), so every kernel sees an ordinary grid of [rows, 1].
    /// </summary>
    public static BlockSize PerRow => new(1, 1 << 30);
    /// <summary>Whether this is <see cref="PerRow"/>.</summary>
    public bool IsPerRow => this == PerRow;
    /// <summary>The same tiles without row chunks: what the kernels run on each chunk.</summary>
    public BlockSize Unchunked => this with { RowChunk = 0 };
    /// <summary>
    /// Scale-grid shape for a weight of <paramref name="rows"/> x <paramref name="cols"/>; with row chunks, each chunk's
    /// rows (the last one's too, if shorter) are blocked on their own.
    /// </summary>
    public (int Rows, int Cols) GridFor(int rows, int cols) =>
        (RowChunk > 0 ? rows / RowChunk * Ceil(RowChunk, Rows) + Ceil(rows % RowChunk, Rows) : Ceil(rows, Rows), Ceil(cols, Cols));
    static int Ceil(long n, int d) => (int)((n + d - 1) / d); // long: PerRow's width must not overflow
    /// <summary>The block as messages show it: <c>128x128</c>, <c>128x128 per 192 rows</c>, or <c>per-row</c>.</summary>
    public override string ToString() => IsPerRow ? "per-row" : RowChunk > 0 ? $"{Rows}x{Cols} per {RowChunk} rows" : $"{Rows}x{Cols}";
}

/// <summary>Options shared by the block kernels.</summary>
public readonly record struct KernelOptions
{
    /// <summary>Accept NaN / infinite scales instead of throwing.</summary>
    public bool AllowNonFiniteScales { get; init; }
    /// <summary>Threads to use; 0 = Environment.ProcessorCount.</summary>
    public int MaxThreads { get; init; }
    /// <summary>
    /// Canonical power-of-two scales (E8M0 FP8 scales, FP4 scales) use the rounding boundary instead of qmax:
    /// the smallest 2^k with amax &lt;= 464 * 2^k (E4M3) or amax &lt; 7 * 2^k (E2M1). Unlike the plain
    /// 2^ceil(log2(amax/qmax)) rule this makes canonical re-quantization of canonical output idempotent in every case.
    /// </summary>
    public bool IdempotentPowerOfTwoScales { get; init; }
}

/// <summary>How the quantizers choose scales.</summary>
public enum ScaleMode
{
    /// <summary>Use the scales passed in; a block whose values overflow qmax*scale gets a new canonical scale.</summary>
    Reuse,
    /// <summary>Compute canonical scales (F32: amax/qmax; E8M0 / power-of-two: 2^ceil(log2(amax/qmax))).</summary>
    Canonical,
}

/// <summary>What a quantizer did: the blocks (row-block, col-block) whose scale it had to replace.</summary>
public sealed record QuantizeReport(IReadOnlyList<(int BlockRow, int BlockCol)> ChangedBlocks);
