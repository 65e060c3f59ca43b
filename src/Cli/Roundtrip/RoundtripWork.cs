using Mtp.Adapters;

namespace Mtp.Cli.Roundtrip;

/// <summary>
/// The work folder of a round trip: <c>native/</c> (the training layout), <c>hf/</c> (back to HF) and, for a split round
/// trip, <c>verdicts/</c> (one comparison per part). Its intermediates are removed at the end unless --keep.
/// </summary>
public sealed class RoundtripWork
{
    /// <summary>Name of the folder holding the per-part comparisons of a split round trip.</summary>
    public const string VerdictsDirName = "verdicts";

    /// <summary>The work folder (absolute).</summary>
    public string Root { get; }
    /// <summary>Whether this run created <see cref="Root"/> (then it removes it whole).</summary>
    public bool Created { get; }
    /// <summary>The training-layout intermediate.</summary>
    public string Native => Path.Combine(Root, "native");
    /// <summary>The HF checkpoint converted back.</summary>
    public string Hf => Path.Combine(Root, "hf");
    /// <summary>The per-part comparisons of a split round trip.</summary>
    public string Verdicts => Path.Combine(Root, VerdictsDirName);

    // A split round trip's folder is made by whichever part runs first, so it is removed when left empty.
    readonly bool _removeWhenEmpty;

    RoundtripWork(string root, bool created, bool removeWhenEmpty)
    {
        Root = root;
        Created = created;
        _removeWhenEmpty = removeWhenEmpty;
    }

    /// <summary>
    /// The work folder of a whole round trip: <paramref name="given"/> (which must be absent or empty, so nothing of the
    /// user's is replaced) or a new folder under the system temp dir.
    /// </summary>
    /// <exception cref="CliException">Exit 2 when <paramref name="given"/> is a file or holds something; exit 5 when it cannot be made.</exception>
    public static RoundtripWork ForWhole(string? given)
    {
        string root = Path.GetFullPath(given ?? Path.Combine(Path.GetTempPath(), $"mtp-roundtrip-{Environment.ProcessId}-{Guid.NewGuid().ToString("N")[..8]}"));
        if (File.Exists(root)) throw new CliException(ExitCodes.Usage, $"{given}: --work is a file, not a folder", file: given);
        bool exists = Directory.Exists(root);
        if (exists && Directory.EnumerateFileSystemEntries(root).FirstOrDefault() is string entry)
            throw new CliException(ExitCodes.Usage, $"{given}: --work holds '{Path.GetFileName(entry)}'; a round trip needs a new or empty work folder", file: given);
        try { Directory.CreateDirectory(root); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new CliException(ExitCodes.Io, $"{root}: cannot create the work folder: {e.Message}", file: root);
        }
        return new RoundtripWork(root, !exists, removeWhenEmpty: false);
    }

    /// <summary>The shared work folder of a split round trip (created by the first part to run).</summary>
    /// <exception cref="CliException">Exit 2 when it is a file; exit 5 when it cannot be made.</exception>
    public static RoundtripWork ForParts(string given)
    {
        string root = Path.GetFullPath(given);
        if (File.Exists(root)) throw new CliException(ExitCodes.Usage, $"{given}: --work is a file, not a folder", file: given);
        try { Directory.CreateDirectory(root); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new CliException(ExitCodes.Io, $"{root}: cannot create the work folder: {e.Message}", file: root);
        }
        return new RoundtripWork(root, created: false, removeWhenEmpty: true);
    }

    /// <summary>Whether <paramref name="dir"/> is a complete conversion (its conversion.json written, no parts pending).</summary>
    public static bool IsComplete(string dir) =>
        File.Exists(Path.Combine(dir, Converter.ReportFileName)) && !Directory.Exists(Path.Combine(dir, Converter.PartsDirName));

    /// <summary>
    /// Removes the intermediates (and the folder when this run created it, or a split round trip's folder left empty); returns what could not be
    /// removed, or null. Never throws: a failed clean-up must not hide the round trip's own outcome.
    /// </summary>
    public string? RemoveIntermediates()
    {
        try
        {
            foreach (string d in new[] { Native, Hf, Verdicts }) if (Directory.Exists(d)) Directory.Delete(d, recursive: true);
            if (Directory.Exists(Root) && (Created || _removeWhenEmpty && !Directory.EnumerateFileSystemEntries(Root).Any())) Directory.Delete(Root, recursive: true);
            return null;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { return Root; }
    }

    /// <summary>What <see cref="RemoveIntermediates"/> removed, for the messages: the folder, or its intermediates.</summary>
    public string RemovedText => Created ? Root : $"{Native}, {Hf}";
}
