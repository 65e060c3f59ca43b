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
}
