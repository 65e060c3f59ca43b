using System.Diagnostics;
using System.Text.RegularExpressions;

namespace Mtp.Adapters;

/// <summary>
/// Temporary output directories of interrupted conversions. A conversion writes into <c>OUT.partial-PID</c> (PID: the
/// converting process) and renames it to <c>OUT</c> only when complete; a run killed part-way leaves that directory.
/// The next conversion into the same OUT removes every <c>OUT.partial-PID</c> whose process is gone.
/// </summary>
public static class Leftovers
{
    /// <summary>Suffix of temporary output directories (followed by the process id).</summary>
    public const string PartialSuffix = ".partial-";

    /// <summary>Removes <c>OUT.partial-PID</c> siblings of <paramref name="outDir"/> left by processes no longer running; returns what was removed.</summary>
    public static IReadOnlyList<string> RemoveStale(string outDir)
    {
        var removed = new List<string>();
        string full = Path.GetFullPath(outDir).TrimEnd('/');
        string? parent = Path.GetDirectoryName(full);
        if (parent == null || !Directory.Exists(parent)) return removed;
        var rx = new Regex("^" + Regex.Escape(Path.GetFileName(full) + PartialSuffix) + @"(\d+)$");
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
