using System.CommandLine;

namespace Mtp.Cli;

/// <summary>Options every command accepts.</summary>
public static class GlobalOptions
{
    /// <summary>--verbose: full exception detail on errors.</summary>
    public static readonly Option<bool> Verbose = new("--verbose", "-v")
    {
        Description = "Print full error detail (stack traces) on failure",
        Recursive = true,
    };

    /// <summary>--quiet: errors only (a --json document is still printed when asked for).</summary>
    public static readonly Option<bool> Quiet = new("--quiet", "-q")
    {
        Description = "Print nothing on success but the --json document when asked for; errors still print",
        Recursive = true,
    };
}
