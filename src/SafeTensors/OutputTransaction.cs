using System.Runtime.InteropServices;

namespace Mtp.SafeTensors;

/// <summary>
/// The one way a command writes a checkpoint directory: everything goes into <c>OUT.partial-PID</c>, which is flushed
/// and renamed to OUT only when complete (<see cref="Commit"/>); a failure or a cancellation removes it
/// (<see cref="Abort"/>). Beginning one checks whether OUT may be replaced (<see cref="OutputFolder.CheckReplaceable"/>),
/// whether the planned bytes fit in the free space, and removes the temporaries of dead processes.
/// A single file is written the same way (<see cref="WriteFile"/>), and a command that needs a working folder beside OUT
/// takes <see cref="ScratchPathFor"/>, which the same stale-temporary rule cleans up.
/// </summary>
public sealed partial class OutputTransaction : IDisposable
{
    readonly OutputRules _rules;
    bool _done;

    /// <summary>The final output directory (absolute).</summary>
    public string Target { get; }
    /// <summary>The temporary directory written into: <c>OUT.partial-PID</c>.</summary>
    public string Directory { get; }

    OutputTransaction(string target, OutputRules rules)
    {
        Target = target;
        Directory = TempPathFor(target);
        _rules = rules;
    }

    /// <summary>The temporary directory this process writes <paramref name="outDir"/> into.</summary>
    public static string TempPathFor(string outDir) => Path.GetFullPath(outDir).TrimEnd('/') + OutputFolder.PartialSuffix + Environment.ProcessId;

    /// <summary>
    /// A working directory beside <paramref name="outDir"/> for intermediates that are not part of the output
    /// (<c>OUT.partial-PID.scratch</c>): the caller creates and removes it; one a dead process left behind is removed by
    /// the next transaction on OUT, like its temporary.
    /// </summary>
    public static string ScratchPathFor(string outDir) => TempPathFor(outDir) + OutputFolder.ScratchSuffix;

    /// <summary>
    /// Checks <paramref name="outDir"/> against <paramref name="rules"/> and <paramref name="plannedBytes"/> against the
    /// free space, removes stale temporaries, and creates the temporary directory.
    /// </summary>
    /// <exception cref="OutputException">OUT may not be replaced, the output does not fit, or the temporary cannot be created.</exception>
    public static OutputTransaction Begin(string outDir, long plannedBytes, OutputRules rules)
    {
        string full = Path.GetFullPath(outDir).TrimEnd('/');
        OutputFolder.CheckReplaceable(outDir, rules);
        var t = new OutputTransaction(full, rules);
        try
        {
            string parent = Path.GetDirectoryName(full) ?? ".";
            System.IO.Directory.CreateDirectory(parent);
            OutputFolder.RemoveStale(full);
            if (!rules.SkipSpaceCheck) OutputFolder.CheckSpace(outDir, parent, plannedBytes);
            if (System.IO.Directory.Exists(t.Directory)) System.IO.Directory.Delete(t.Directory, true);
            System.IO.Directory.CreateDirectory(t.Directory);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new OutputException(OutputErrorKind.Io, t.Directory, $"{t.Directory}: cannot create the output: {e.Message}", e);
        }
        return t;
    }

    /// <summary>
    /// Runs <paramref name="write"/> on the temporary directory, then commits. On any failure the temporary is removed;
    /// a cancellation becomes <see cref="OutputInterruptedException"/> naming what was removed.
    /// </summary>
    public T Run<T>(Func<string, T> write)
    {
        try
        {
            T r = write(Directory);
            Commit();
            return r;
        }
        catch (OperationCanceledException e) when (e is not OutputInterruptedException)
        {
            bool removed = Abort();
            throw new OutputInterruptedException(removed ? Directory : null, removed ? null : Directory, e);
        }
        finally
        {
            if (!_done) Abort();
        }
    }

    /// <summary>
    /// Flushes every file of the temporary to disk and renames it to <see cref="Target"/>. A previous output is first
    /// renamed aside (<c>OUT.partial-PID.replaced</c>) and removed after, so OUT is at every moment either the old or the
    /// new output.
    /// </summary>
    public void Commit()
    {
        _rules.Cancel.ThrowIfCancellationRequested();
        foreach (string f in System.IO.Directory.EnumerateFiles(Directory, "*", SearchOption.AllDirectories)) FlushToDisk(f);
        string aside = Directory + ".replaced";
        bool replacing = System.IO.Directory.Exists(Target);
        if (replacing) System.IO.Directory.Move(Target, aside);
        try { System.IO.Directory.Move(Directory, Target); }
        catch when (replacing)
        {
            System.IO.Directory.Move(aside, Target); // put the previous output back
            throw;
        }
        _done = true;
        try { if (System.IO.Directory.Exists(aside)) System.IO.Directory.Delete(aside, true); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { /* a stale leftover now: the next run removes it */ }
    }

    // fsync through a read-only descriptor: copied auxiliary files may be read-only (they keep their source's mode).
    static void FlushToDisk(string file)
    {
        if (!OperatingSystem.IsLinux()) return;
        using var h = File.OpenHandle(file, FileMode.Open, FileAccess.Read);
        try
        {
            if (Fsync(h.DangerousGetHandle()) != 0)
                throw new IOException($"{file}: fsync failed: {Marshal.GetPInvokeErrorMessage(Marshal.GetLastPInvokeError())}");
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException) { }
    }

    [DllImport("libc", EntryPoint = "fsync", SetLastError = true)]
    static extern int Fsync(nint fd);

    /// <summary>Removes the temporary (when not committed); true when it is gone.</summary>
    public bool Abort()
    {
        if (_done) return false;
        _done = true;
        try
        {
            if (System.IO.Directory.Exists(Directory)) System.IO.Directory.Delete(Directory, true);
            return true;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { return false; }
    }

    /// <summary>Aborts unless committed.</summary>
    public void Dispose() => Abort();
}
