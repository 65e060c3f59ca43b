namespace Mtp.SafeTensors;

/// <summary>How an <see cref="OutputTransaction"/> treats an existing output directory and the disk.</summary>
public sealed record OutputRules
{
    /// <summary>Replace an existing output that is a previous checkpoint output (see <see cref="OutputFolder.IsPreviousOutput"/>) holding nothing else.</summary>
    public bool Force { get; init; }
    /// <summary>Replace an existing output whatever it holds (implies <see cref="Force"/>).</summary>
    public bool ForceAny { get; init; }
    /// <summary>Skip the comparison of the planned output size with the free space.</summary>
    public bool SkipSpaceCheck { get; init; }
    /// <summary>Stops the writing; the transaction then removes its temporary.</summary>
    public CancellationToken Cancel { get; init; }
    /// <summary>Top-level file names a previous output may hold besides checkpoint files: the auxiliary files the command copies (tokenizer, ...).</summary>
    public IReadOnlyCollection<string> CarriedNames { get; init; } = Array.Empty<string>();
}

/// <summary>Why an output could not be started or finished.</summary>
public enum OutputErrorKind
{
    /// <summary>The output exists and may not be replaced under the given rules.</summary>
    Refused,
    /// <summary>The planned output does not fit in the free space.</summary>
    NoSpace,
    /// <summary>An operating-system I/O failure while preparing or committing.</summary>
    Io,
}

/// <summary>Why <see cref="OutputFolder.CheckReplaceable"/> refused an existing output.</summary>
public enum OutputRefusal
{
    /// <summary>Not a refusal (no space, I/O).</summary>
    None,
    /// <summary>The output path is a file.</summary>
    IsFile,
    /// <summary>A non-empty directory, and replacing was not asked for.</summary>
    NotEmpty,
    /// <summary>Replacing a previous output was asked for, but the directory is none.</summary>
    NotPreviousOutput,
    /// <summary>A previous output, but it also holds an entry that is not part of a checkpoint.</summary>
    ForeignEntry,
}

/// <summary>An output directory that may not be written or replaced; one line naming the path.</summary>
public sealed class OutputException(OutputErrorKind kind, string file, string message, Exception? inner = null) : Exception(message, inner)
{
    /// <summary>What went wrong.</summary>
    public OutputErrorKind Kind { get; } = kind;
    /// <summary>The path concerned.</summary>
    public string File { get; } = file;
    /// <summary>Why an existing output was refused (<see cref="OutputErrorKind.Refused"/>); None otherwise.</summary>
    public OutputRefusal Refusal { get; init; }
}

/// <summary>
/// Writing was cancelled (SIGINT/SIGTERM); the transaction's temporary directory was removed (<see cref="Removed"/>) or,
/// where that failed, left behind (<see cref="Left"/>).
/// </summary>
public sealed class OutputInterruptedException(string? removed, string? left, OperationCanceledException inner)
    : OperationCanceledException(inner.Message, inner, inner.CancellationToken)
{
    /// <summary>The temporary directory that was removed, if any.</summary>
    public string? Removed { get; } = removed;
    /// <summary>The temporary directory that could not be removed, if any.</summary>
    public string? Left { get; } = left;
}
