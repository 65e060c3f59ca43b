using Mtp.SafeTensors;
using Mtp.SafeTensors.IO;

namespace Mtp.Adapters;

/// <summary>Options of a conversion.</summary>
public sealed record ConvertOptions
{
    /// <summary>Family id; null: detect from config.json (or conversion.json).</summary>
    public string? Family { get; init; }
    /// <summary>
    /// Float dtype (BF16 or F32). To native: what quantized and BF16 tensors become (null: BF16). To HF: null re-quantizes
    /// to the source scheme (the reference's, else the one recorded in the input's conversion.json; with neither the
    /// export is refused); a value writes an unquantized HF checkpoint in that dtype.
    /// </summary>
    public DType? DType { get; init; }
    /// <summary>To HF: the original HF checkpoint, whose scales, shard names, weight_map and config.json are reused.</summary>
    public string? Reference { get; init; }
    /// <summary>To native: one tensor per expert instead of stacked [E, ...] tensors.</summary>
    public bool PerExpertLayout { get; init; }
    /// <summary>Worker threads; 0: all cores.</summary>
    public int Threads { get; init; }
    /// <summary>Maximum bytes per output shard.</summary>
    public long MaxShardBytes { get; init; } = 5_000_000_000;
    /// <summary>Budget for bytes computed in memory at once (peak use is about this plus one tensor piece).</summary>
    public long MaxMemoryBytes { get; init; } = 2L << 30;
    /// <summary>Output bytes per computed row block (dequantize / cast pieces are split into blocks of about this size).</summary>
    public long BlockBytes { get; init; } = 16L << 20;
    /// <summary>
    /// Stream past the page cache (default): output shards are written with direct I/O where the file system allows it
    /// (<see cref="WriteMode.Direct"/>, else write-behind) and source ranges are dropped from the cache once consumed, so a
    /// 1.6 TB conversion neither fills memory nor evicts everything else. False leaves input and output cached.
    /// </summary>
    public bool DropBehind { get; init; } = true;
    /// <summary>Replace an existing output directory that is a previous checkpoint output holding nothing else (see <see cref="OutputFolder.CheckReplaceable"/>).</summary>
    public bool Force { get; init; }
    /// <summary>Replace an existing output directory whatever it holds.</summary>
    public bool ForceAny { get; init; }
    /// <summary>Do not compare the planned output size with the free space before writing.</summary>
    public bool SkipSpaceCheck { get; init; }
    /// <summary>Stops the conversion (its workers and read-ahead threads); the temporary output is then removed.</summary>
    public CancellationToken Cancel { get; init; }
    /// <summary>Carry tensors no rule claims through unchanged (reported) instead of failing.</summary>
    public bool AllowUnknown { get; init; }
    /// <summary>
    /// Convert only part <c>Index</c> (1-based) of <c>Count</c> disjoint sets of output shards, into the output directory
    /// directly, with a manifest; <see cref="Converter.MergeParts"/> completes the checkpoint once all parts are done.
    /// </summary>
    public (int Index, int Count)? Part { get; init; }
    /// <summary>
    /// Accept a <see cref="Part"/> count above the plan's shard count (some parts then write nothing). Off: that is a usage
    /// error, since such a part would exit having done nothing. The round trip sets it: one count serves both directions.
    /// </summary>
    public bool AllowEmptyParts { get; init; }
    /// <summary>Where warnings go (a shard over <see cref="MaxShardBytes"/>); silent by default.</summary>
    public Microsoft.Extensions.Logging.ILogger Logger { get; init; } = Microsoft.Extensions.Logging.Abstractions.NullLogger.Instance;
}

/// <summary>Progress callbacks (all optional; called from the writing thread).</summary>
public sealed class ConvertProgress
{
    /// <summary>Called once with the total bytes to write.</summary>
    public Action<long>? Started { get; init; }
    /// <summary>Called with the bytes just written and the tensor they belong to.</summary>
    public Action<long, string>? Advanced { get; init; }
    /// <summary>Plain log lines (plan summary, shard done, warnings).</summary>
    public Action<string>? Log { get; init; }
}

/// <summary>What a conversion did (init-only properties: three code paths build it, named fields keep them honest).</summary>
public sealed record ConversionResult
{
    /// <summary>The output directory.</summary>
    public required string OutputDirectory { get; init; }
    /// <summary>Family id.</summary>
    public required string Family { get; init; }
    /// <summary>Output tensors.</summary>
    public required int TensorsWritten { get; init; }
    /// <summary>Source tensors dropped, with their reasons.</summary>
    public required IReadOnlyList<(string Name, string Reason)> Dropped { get; init; }
    /// <summary>Unclaimed tensors carried through (with AllowUnknown).</summary>
    public required IReadOnlyList<string> CarriedUnknown { get; init; }
    /// <summary>Tensor bytes written.</summary>
    public required long BytesWritten { get; init; }
    /// <summary>Output shard file names.</summary>
    public required IReadOnlyList<string> Shards { get; init; }
    /// <summary>To HF: weights that changed and were re-quantized, with the number of blocks that needed a new scale.</summary>
    public required IReadOnlyList<(string Name, int ChangedBlocks)> Requantized { get; init; }
    /// <summary>Wall time.</summary>
    public required TimeSpan Elapsed { get; init; }
}
