namespace Mtp.Adapters;

/// <summary>The category of a conversion failure; a caller (the CLI) decides what each category means to it.</summary>
public enum AdapterErrorKind
{
    /// <summary>Bad arguments or options.</summary>
    Usage,
    /// <summary>Malformed input: shapes, dtypes or configs that contradict each other.</summary>
    Malformed,
    /// <summary>Inconsistent checkpoint: missing expected tensors, unknown tensors, rule collisions.</summary>
    Inconsistent,
    /// <summary>Operating-system I/O failure.</summary>
    Io,
}

/// <summary>A conversion failure with a one-line message.</summary>
public sealed class AdapterException : Exception
{
    /// <summary>Kind of failure.</summary>
    public AdapterErrorKind Kind { get; }

    /// <summary>The file concerned, when known.</summary>
    public string? File { get; init; }

    /// <summary>The tensor concerned, when known.</summary>
    public string? Tensor { get; init; }

    /// <summary>Every name a message lists only in part (missing, unclaimed ...), for --json and --verbose; null when none.</summary>
    public IReadOnlyList<string>? Names { get; init; }

    /// <summary>Creates the exception.</summary>
    public AdapterException(AdapterErrorKind kind, string message, Exception? inner = null) : base(message, inner) => Kind = kind;
}
