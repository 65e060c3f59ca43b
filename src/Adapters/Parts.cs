namespace Mtp.Adapters;

/// <summary>
/// Split conversions: <c>--part i/n</c> writes the i-th of n disjoint, contiguous sets of output shards straight into OUT
/// with a manifest (<see cref="PartExecution"/>); <see cref="MergeParts"/> completes the checkpoint once all n are done
/// (<see cref="PartMerge"/>).
/// </summary>
public static partial class Converter
{
    /// <summary>Directory inside OUT that holds the part manifests until the merge.</summary>
    public const string PartsDirName = ".mtp-parts";

    /// <summary>The part (1-based) that writes shard <paramref name="shard"/> (0-based) of <paramref name="shards"/>, of <paramref name="parts"/>: contiguous runs.</summary>
    public static int PartOfShard(int shard, int shards, int parts) => (int)((long)shard * parts / Math.Max(1, shards)) + 1;

    /// <summary>The manifest file name of part <paramref name="i"/> of <paramref name="n"/>.</summary>
    public static string PartManifestName(int i, int n) => $"part-{i}-of-{n}.json";

    /// <summary>
    /// Completes a checkpoint converted with <c>--part i/n</c>: refuses (one line) when a part is missing, was converted from
    /// another plan, or a shard is missing or of the wrong size; otherwise writes the index, config.json and conversion.json.
    /// </summary>
    /// <exception cref="AdapterException">Usage (no parts), Inconsistent (missing or disagreeing parts, shards), Malformed
    /// (a part document with a missing or mistyped field), I/O.</exception>
    public static ConversionResult MergeParts(string outDir) => PartMerge.Run(outDir);
}
