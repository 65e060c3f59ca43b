using System.Diagnostics;
using Mtp.Tests.Shared;

namespace Mtp.SafeTensors.Tests;

/// <summary>Issue 15 item 9: one dotnet test left ~96 folders in /tmp/mtp-tests. Every test temp dir now lives in a per-run folder that is removed.</summary>
public class TempDirsTests
{
    string _base = "";

    [SetUp] public void SetUp() => _base = Path.Combine(Path.GetTempPath(), "mtp-tempdirs-test-" + Guid.NewGuid().ToString("N")[..8]);
    [TearDown] public void TearDown() { if (Directory.Exists(_base)) Directory.Delete(_base, true); }

    [Test]
    public void EveryTestTempDirLiesInThisRunsFolder()
    {
        string dir = RepoPaths.NewTempDir("probe");
        string run = Path.GetFileName(Path.GetDirectoryName(dir)!);
        Assert.That(run, Does.StartWith($"run-{Environment.ProcessId}-"), dir);
        Assert.That(Path.GetDirectoryName(dir), Is.EqualTo(TempDirs.Default.Root));
    }

    [Test]
    public void RemovingTheRootRemovesEverythingInIt()
    {
        var dirs = new TempDirs(_base);
        string a = dirs.New("a"), b = dirs.New("b");
        File.WriteAllText(Path.Combine(a, "f"), "x");
        Directory.CreateDirectory(Path.Combine(b, "nested", "deeper"));
        dirs.RemoveRoot();
        Assert.That(Directory.GetFileSystemEntries(_base), Is.Empty);
    }

    [Test]
    public void FoldersOfDeadRunsAreSweptAndLiveOnesKept()
    {
        using var exited = Process.Start(new ProcessStartInfo("true") { UseShellExecute = false })!;
        exited.WaitForExit();
        string dead = Path.Combine(_base, $"run-{exited.Id}-deadbeef"), live = Path.Combine(_base, $"run-{Environment.ProcessId}-0000live");
        string other = Path.Combine(_base, "not-a-run");
        foreach (string d in new[] { dead, live, other }) Directory.CreateDirectory(Path.Combine(d, "x"));
        new TempDirs(_base).SweepDeadRuns();
        Assert.That(Directory.Exists(dead), Is.False);
        Assert.That(Directory.Exists(live) && Directory.Exists(other), Is.True);
    }
}
