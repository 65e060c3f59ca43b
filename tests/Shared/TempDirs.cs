namespace Mtp.Tests.Shared;

/// <summary>
/// One folder per test process holding every temporary directory the tests make: BASE/run-PID-ID. It is removed when
/// the assembly's tests end (<see cref="TempDirCleanup"/>, which runs whether tests passed or failed) and at process
/// exit; a folder whose process died (killed run, crashed host) is removed by the next run. Folders of other live
/// processes (parallel test runs) are left alone.
/// </summary>
public sealed class TempDirs
{
    const string Prefix = "run-";
    readonly string _base;
    readonly object _gate = new();
    string? _root;

    /// <summary>The test process's instance, under TMP/mtp-tests.</summary>
    public static TempDirs Default { get; } = new(Path.Combine(Path.GetTempPath(), "mtp-tests"));

    /// <summary>An instance whose run folders live under <paramref name="baseDir"/>.</summary>
    public TempDirs(string baseDir) => _base = baseDir;

    /// <summary>This process's run folder (created, after sweeping dead runs' folders, on first use).</summary>
    public string Root
    {
        get
        {
            lock (_gate)
            {
                if (_root is not null) return _root;
                SweepDeadRuns();
                _root = Path.Combine(_base, $"{Prefix}{Environment.ProcessId}-{Guid.NewGuid().ToString("N")[..8]}");
                Directory.CreateDirectory(_root);
                AppDomain.CurrentDomain.ProcessExit += (_, _) =>
                {
                    try { RemoveRoot(); }
                    catch (Exception e) when (e is IOException or UnauthorizedAccessException) { } // the next run sweeps it
                };
                return _root;
            }
        }
    }

    /// <summary>A fresh empty directory named after <paramref name="tag"/> inside <see cref="Root"/>.</summary>
    public string New(string tag)
    {
        string dir = Path.Combine(Root, tag + "-" + Guid.NewGuid().ToString("N")[..8]);
        Directory.CreateDirectory(dir);
        return dir;
    }

    /// <summary>Removes this process's run folder and everything in it (nothing if it was never made).</summary>
    public void RemoveRoot()
    {
        string? root;
        lock (_gate) { root = _root; _root = null; }
        if (root is not null && Directory.Exists(root)) Directory.Delete(root, recursive: true);
    }

    /// <summary>Removes the run folders of processes that no longer run.</summary>
    public void SweepDeadRuns()
    {
        if (!Directory.Exists(_base)) return;
        foreach (string dir in Directory.GetDirectories(_base, Prefix + "*"))
        {
            string name = Path.GetFileName(dir);
            int dash = name.IndexOf('-', Prefix.Length);
            if (dash < 0 || !int.TryParse(name.AsSpan(Prefix.Length, dash - Prefix.Length), out int pid) || IsRunning(pid)) continue;
            try { Directory.Delete(dir, recursive: true); }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException) { } // another run sweeping the same folder
        }
    }

    static bool IsRunning(int pid)
    {
        try { using var p = System.Diagnostics.Process.GetProcessById(pid); return !p.HasExited; }
        catch (ArgumentException) { return false; }
    }
}
