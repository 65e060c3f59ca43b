using Mtp.Adapters;
using Mtp.SafeTensors;

namespace Mtp.Cli;

/// <summary>
/// The one place where the libraries' error categories become <c>mtp</c> exit codes: the libraries say what went wrong,
/// only the CLI decides which number a script sees.
/// </summary>
public static class ErrorCategories
{
    /// <summary>Exit code for a conversion failure's category.</summary>
    public static int ExitCode(AdapterErrorKind kind) => kind switch
    {
        AdapterErrorKind.Usage => ExitCodes.Usage,
        AdapterErrorKind.Malformed => ExitCodes.Malformed,
        AdapterErrorKind.Inconsistent => ExitCodes.Inconsistent,
        AdapterErrorKind.Io => ExitCodes.Io,
        _ => ExitCodes.Internal,
    };

    /// <summary>Exit code for an output that could not be started or finished: a refusal is a usage error, the rest I/O.</summary>
    public static int ExitCode(OutputErrorKind kind) => kind switch
    {
        OutputErrorKind.Refused => ExitCodes.Usage,
        OutputErrorKind.NoSpace or OutputErrorKind.Io => ExitCodes.Io,
        _ => ExitCodes.Internal,
    };

    /// <summary>Exit code for a reader error kind: index and cross-file problems are inconsistencies, the rest malformed files.</summary>
    public static int ExitCode(SafeTensorsError error) => error switch
    {
        SafeTensorsError.BadIndex or SafeTensorsError.MissingShard or SafeTensorsError.TensorMissingFromShard
            or SafeTensorsError.TensorNotInIndex or SafeTensorsError.TensorInTwoShards or SafeTensorsError.TensorNotFound => ExitCodes.Inconsistent,
        SafeTensorsError.NoCheckpoint => ExitCodes.Usage,
        SafeTensorsError.Io => ExitCodes.Io,
        _ => ExitCodes.Malformed,
    };

    /// <summary>
    /// The one line <c>mtp</c> prints for <paramref name="e"/>: its message, plus the flag that would change the outcome
    /// when the failure is an output the command may not replace or that does not fit (the library names no flags).
    /// </summary>
    public static string MessageOf(Exception e)
    {
        string message = e.Message;
        // The output failure may be wrapped (a conversion reports it as its own error, with the same message).
        for (Exception? x = e; x is not null; x = x is AggregateException { InnerExceptions.Count: 1 } a ? a.InnerExceptions[0] : x.InnerException)
            if (x is OutputException o)
                return message.EndsWith(o.Message, StringComparison.Ordinal) ? message + Hint(o) : message;
        return message;
    }

    static string Hint(OutputException o) => o.Kind == OutputErrorKind.NoSpace ? " (use --no-space-check to try anyway)" : o.Refusal switch
    {
        OutputRefusal.NotEmpty => " (use --force to replace a previous output)",
        OutputRefusal.NotPreviousOutput => "; --force replaces only a previous output (use --force-any to replace it anyway)",
        OutputRefusal.ForeignEntry => "; --force would delete it (move it away, or use --force-any)",
        _ => "",
    };
}
