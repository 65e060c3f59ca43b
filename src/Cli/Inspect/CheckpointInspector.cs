using Mtp.SafeTensors;
using Findings = Mtp.Adapters.Inspection.CheckpointFindings;
using Library = Mtp.Adapters.Inspection.CheckpointInspector;

namespace Mtp.Cli.Inspect;

/// <summary><c>mtp inspect</c>'s side of an inspection: the library's findings with the exit code they imply.</summary>
public static class CheckpointInspector
{
    /// <summary>Maps config.json's model_type to a family id.</summary>
    public static string FamilyOf(string? modelType) => Library.FamilyOf(modelType);

    /// <summary>Inspects <paramref name="path"/> (see <see cref="Library.Inspect"/>).</summary>
    public static CheckpointReport Inspect(string path, bool fullScales = false)
    {
        Findings f = Library.Inspect(path, fullScales);
        return new CheckpointReport(f, ExitCode(f));
    }

    /// <summary>
    /// The exit code the problems imply: the reader's own (the lowest of them), else inconsistent; malformed quantization
    /// lowers either to malformed, other quantization problems make an otherwise clean checkpoint inconsistent.
    /// </summary>
    static int ExitCode(Findings f)
    {
        int exit = f.ReaderErrors.Count == 0 ? 0 : f.ReaderErrors.Select(ExitCodes.For).Min();
        if (f.InconsistentProblems > 0 && exit == 0) exit = ExitCodes.Inconsistent;
        if (f.QuantMalformed > 0) exit = exit == 0 ? ExitCodes.Malformed : Math.Min(exit, ExitCodes.Malformed);
        else if (f.QuantProblems > 0 && exit == 0) exit = ExitCodes.Inconsistent;
        return exit;
    }
}

/// <summary>The scale reader's figures <c>mtp inspect</c> shows.</summary>
static class ScaleReader
{
    /// <summary>Bytes read of each FP4 group scale when sampling.</summary>
    public const int SampleBytes = Library.ScaleSampleBytes;
}
