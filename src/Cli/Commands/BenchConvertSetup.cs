namespace Mtp.Cli.Commands;

/// <summary>What one <c>mtp bench convert</c> measures, as parsed from its command line.</summary>
sealed record BenchConvertSetup
{
    /// <summary>The synthetic family.</summary>
    public required string Family { get; init; }
    /// <summary>Target checkpoint bytes.</summary>
    public required long Target { get; init; }
    /// <summary>--work, or null for a new temporary directory.</summary>
    public string? Work { get; init; }
    /// <summary>--keep: leave the checkpoints behind.</summary>
    public bool Keep { get; init; }
    /// <summary>Conversion threads (0: all cores).</summary>
    public int Threads { get; init; }
    /// <summary>--max-memory as typed (passed on to each conversion).</summary>
    public required string MemoryText { get; init; }
    /// <summary>--max-shard-size as typed (passed on to each conversion).</summary>
    public required string ShardText { get; init; }
    /// <summary>--max-shard-size in bytes.</summary>
    public long MaxShard { get; init; }
    /// <summary>--cache: auto, drop or warm.</summary>
    public required string CacheMode { get; init; }
    /// <summary>--page-cache drop: conversions and floor drop behind.</summary>
    public bool DropBehind { get; init; }
    /// <summary>Interleaved repetitions.</summary>
    public int Repeat { get; init; } = 1;
}

/// <summary>The work folder of a <c>mtp bench convert</c> run and the checkpoints in it.</summary>
sealed record BenchPaths(string Work, string Hf, string Native, string Back, string FloorFile)
{
    /// <summary>The paths under <paramref name="work"/>.</summary>
    public static BenchPaths Under(string work) =>
        new(work, Path.Combine(work, "hf"), Path.Combine(work, "native"), Path.Combine(work, "hf-back"), Path.Combine(work, "io-floor.bin"));
}
