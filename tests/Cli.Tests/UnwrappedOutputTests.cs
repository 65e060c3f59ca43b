using Mtp.Tests.Shared;

namespace Mtp.Cli.Tests;

/// <summary>Output that is not a terminal (the test host's pipes, a CI log) is not wrapped, and logs stay off stdout.</summary>
public class UnwrappedOutputTests
{
    static string LongDir(string tag) =>
        Path.Combine(RepoPaths.NewTempDir(tag), "a-folder-name-long-enough-that-a-path-through-it-is-far-wider-than-eighty-columns", "checkpoint");

    [Test]
    public void InspectsTableKeepsALongPathOnOneLine()
    {
        string dir = LongDir("unwrapped-inspect");
        Directory.CreateDirectory(dir);
        foreach (string f in Directory.GetFiles(Path.Combine(RepoPaths.Fixtures, "deepseek-v3"))) File.Copy(f, Path.Combine(dir, Path.GetFileName(f)));
        var (code, stdout, stderr) = CliRunner.Run("inspect", dir);
        Assert.That(code, Is.EqualTo(ExitCodes.Ok), stderr);
        Assert.That(stdout.Split('\n'), Has.Some.Contains(dir), stdout);
    }

    [Test]
    public void DemoLogsOnStderrAndItsTableOnStdoutUnwrapped()
    {
        string dir = LongDir("unwrapped-demo");
        var (code, stdout, stderr) = CliRunner.Run("demo", "--work", dir, "--steps", "0");
        Assert.That(code, Is.EqualTo(ExitCodes.Ok), stderr);
        Assert.That(stderr, Does.Contain("mtp: synthesize ..."), "the stages' log lines");
        Assert.That(stdout, Does.Not.Contain("synthesize ..."), "stdout carries the result only");
        Assert.That(stdout.Split('\n'), Has.Some.Contains(Path.Combine(dir, "native")), stdout);
        Assert.That(stdout.Split('\n').Count(l => l.Contains("convert to training layout", StringComparison.Ordinal)), Is.EqualTo(1), "one table row, not wrapped");
    }
}
