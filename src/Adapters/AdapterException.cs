namespace Mtp.Adapters;

/// <summary>What went wrong, which decides the CLI's exit code.</summary>
public enum AdapterErrorKind
{
    /// <summary>Bad arguments or options (exit 2).</summary>
    Usage = 2,
    /// <summary>Malformed input: shapes, dtypes or configs that contradict each other (exit 3).</summary>
    Malformed = 3,
    /// <summary>Inconsistent checkpoint: missing expected tensors, unknown tensors, rule collisions (exit 4).</summary>
    Inconsistent = 4,
    /// <summary>Operating-system I/O failure (exit 5).</summary>
    Io = 5,
}

/// <summary>A conversion failure with a one-line message.</summary>
public sealed class AdapterException : Exception
{
    /// <summary>Kind of failure.</summary>
    public AdapterErrorKind Kind { get; }

    /// <summary>Process exit code for this failure.</summary>
    public int ExitCode => (int)Kind;

    /// <summary>The file concerned, when known.</summary>
    public string? File { get; init; }

    /// <summary>The tensor concerned, when known.</summary>
    public string? Tensor { get; init; }

    /// <summary>Every name a message lists only in part (missing, unclaimed ...), for --json and --verbose; null when none.</summary>
    public IReadOnlyList<string>? Names { get; init; }

    /// <summary>Creates the exception.</summary>
    public AdapterException(AdapterErrorKind kind, string message, Exception? inner = null) : base(message, inner) => Kind = kind;
}
