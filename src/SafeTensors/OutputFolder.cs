using System.Diagnostics;
using System.Globalization;
using System.Text.RegularExpressions;

namespace Mtp.SafeTensors;

/// <summary>
/// What an output directory holds, as far as replacing it goes: whether it is a previous checkpoint output, which entry
/// in it is not part of one, the free space under it, and the temporaries that dead processes left beside it.
/// </summary>
public static class OutputFolder
{
    /// <summary>Suffix of every temporary output directory: <c>OUT.partial-PID</c> (PID: the writing process).</summary>
    public const string PartialSuffix = ".partial-";

    /// <summary>Suffix of a scratch directory beside OUT: <c>OUT.partial-PID.scratch</c> (see <see cref="OutputTransaction.ScratchPathFor"/>).</summary>
    public const string ScratchSuffix = ".scratch";

    // Files and directories a checkpoint written by mtp consists of (besides the auxiliary files it carried).
    static readonly HashSet<string> CheckpointNames = new(StringComparer.Ordinal)
    {
        "config.json", "conversion.json", ShardIndex.FileName, "generation_config.json", "training_state", ".mtp-parts",
    };

    /// <summary>
    /// Whether <paramref name="dir"/> is a previous checkpoint output: it holds conversion.json (convert), an index, a
    /// <c>training_state/trainer_state.json</c> (train --out), or config.json next to a .safetensors file (synth,
    /// single-shard outputs).
    /// </summary>
    public static bool IsPreviousOutput(string dir) =>
        File.Exists(Path.Combine(dir, "conversion.json")) || File.Exists(Path.Combine(dir, ShardIndex.FileName))
        || File.Exists(Path.Combine(dir, "training_state", "trainer_state.json"))
        || File.Exists(Path.Combine(dir, "config.json")) && Directory.EnumerateFiles(dir, "*.safetensors").Any();

    /// <summary>The first entry of <paramref name="dir"/> (sorted) that is not part of a checkpoint, or null.</summary>
    public static string? ForeignEntry(string dir, IReadOnlyCollection<string> carriedNames)
    {
        foreach (string e in Directory.EnumerateFileSystemEntries(dir).Order(StringComparer.Ordinal))
        {
            string name = Path.GetFileName(e);
            bool isDir = Directory.Exists(e);
            if (CheckpointNames.Contains(name) || carriedNames.Contains(name)) continue;
            if (!isDir && (name.EndsWith(".safetensors", StringComparison.Ordinal) || name.Contains(PartialSuffix, StringComparison.Ordinal))) continue;
            return name + (isDir ? "/" : "");
        }
        return null;
    }

    /// <summary>
    /// Throws <see cref="OutputException"/> when <paramref name="outDir"/> may not be written under <paramref name="rules"/>:
    /// a file; a non-empty directory without <see cref="OutputRules.Force"/>; with it, one that is no previous output or holds
    /// anything else (named), unless <see cref="OutputRules.ForceAny"/>. The message says what is there; which flag would
    /// change the outcome is the caller's to say (<see cref="OutputException.Refusal"/>).
    /// </summary>
    public static void CheckReplaceable(string outDir, OutputRules rules)
    {
        if (File.Exists(outDir)) throw new OutputException(OutputErrorKind.Refused, outDir, $"{outDir}: exists and is a file") { Refusal = OutputRefusal.IsFile };
        if (!Directory.Exists(outDir) || rules.ForceAny || !Directory.EnumerateFileSystemEntries(outDir).Any()) return;
        if (!rules.Force)
            throw new OutputException(OutputErrorKind.Refused, outDir, $"{outDir}: exists and is not empty") { Refusal = OutputRefusal.NotEmpty };
        string? foreign = ForeignEntry(outDir, rules.CarriedNames);
        if (!IsPreviousOutput(outDir))
            throw new OutputException(OutputErrorKind.Refused, outDir,
                $"{outDir}: not a previous checkpoint output (no conversion.json, index, training_state or config.json with .safetensors) and holds '{foreign}'")
            { Refusal = OutputRefusal.NotPreviousOutput };
        if (foreign != null)
            throw new OutputException(OutputErrorKind.Refused, outDir,
                $"{outDir}: holds '{foreign}', which is not part of a checkpoint") { Refusal = OutputRefusal.ForeignEntry };
    }

    /// <summary>Bytes available to this process on the file system of <paramref name="dir"/> (an existing directory).</summary>
    public static long FreeBytes(string dir) => new DriveInfo(dir).AvailableFreeSpace;

    /// <summary>Throws <see cref="OutputException"/> (no space) when <paramref name="plannedBytes"/> exceed the free space at <paramref name="dir"/>.</summary>
    public static void CheckSpace(string outDir, string dir, long plannedBytes)
    {
        long free;
        try { free = FreeBytes(dir); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or ArgumentException) { return; } // unknown: let the writes tell
        if (plannedBytes <= free) return;
        throw new OutputException(OutputErrorKind.NoSpace, outDir, string.Create(CultureInfo.InvariantCulture,
            $"{outDir}: needs {plannedBytes:N0} bytes ({Human(plannedBytes)}) but {dir} has {free:N0} bytes ({Human(free)}) free"));
    }

    static string Human(long b) => b >= 1L << 30 ? string.Create(CultureInfo.InvariantCulture, $"{b / (double)(1L << 30):0.0} GiB")
        : string.Create(CultureInfo.InvariantCulture, $"{b / (double)(1L << 20):0.0} MiB");

    /// <summary>
    /// Removes every <c>OUT.partial-PID</c> sibling of <paramref name="outDir"/> (and its <c>.replaced</c> and <c>.scratch</c> companions) whose
    /// process is no longer running; a live process's temporary and this process's are kept. Returns what was removed.
    /// </summary>
    public static IReadOnlyList<string> RemoveStale(string outDir)
    {
        var removed = new List<string>();
        string full = Path.GetFullPath(outDir).TrimEnd('/');
        string? parent = Path.GetDirectoryName(full);
        if (parent == null || !Directory.Exists(parent)) return removed;
        var rx = new Regex("^" + Regex.Escape(Path.GetFileName(full) + PartialSuffix) + @"(\d+)(\.replaced|" + Regex.Escape(ScratchSuffix) + ")?$");
        foreach (string d in Directory.EnumerateDirectories(parent))
        {
            Match m = rx.Match(Path.GetFileName(d));
            if (!m.Success || !int.TryParse(m.Groups[1].Value, out int pid) || pid == Environment.ProcessId || IsRunning(pid)) continue;
            try
            {
                Directory.Delete(d, true);
                removed.Add(d);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException) { /* not ours to fight over: leave it */ }
        }
        return removed;
    }

    static bool IsRunning(int pid)
    {
        try
        {
            using var p = Process.GetProcessById(pid);
            return !p.HasExited;
        }
        catch (ArgumentException) { return false; }
        catch (InvalidOperationException) { return false; }
    }
}
