using Mtp.SafeTensors;

namespace Mtp.Cli;

/// <summary>The documented exit codes of every <c>mtp</c> command.</summary>
public static class ExitCodes
{
    /// <summary>Success.</summary>
    public const int Ok = 0;
    /// <summary>An internal error (a bug): reported with --verbose detail.</summary>
    public const int Internal = 1;
    /// <summary>Bad command line, or a path that does not exist.</summary>
    public const int Usage = 2;
    /// <summary>A malformed file (header, dtype, offsets, numbers).</summary>
    public const int Malformed = 3;
    /// <summary>Files that disagree with each other or with config.json (index, missing tensors, depths).</summary>
    public const int Inconsistent = 4;
    /// <summary>An operating-system I/O failure (permissions, disk full).</summary>
    public const int Io = 5;
    /// <summary>A comparison found differences (verify).</summary>
    public const int Different = 6;

    /// <summary>Class name used in --json error output.</summary>
    public static string ClassName(int code) => code switch
    {
        Usage => "usage",
        Malformed => "malformed",
        Inconsistent => "inconsistent",
        Io => "io",
        Different => "different",
        _ => "internal",
    };

    /// <summary>Exit code for a reader error kind (see <see cref="ErrorCategories"/>).</summary>
    public static int For(SafeTensorsError error) => ErrorCategories.ExitCode(error);
}
