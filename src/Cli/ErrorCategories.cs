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
}
