using System.Text.RegularExpressions;
using Mtp.Tests.Shared;

namespace Mtp.Cli.Tests;

/// <summary>Progress when stderr is not a terminal: a timed line with bytes, percent, rate, elapsed time and ETA.</summary>
public class ProgressLinesTests
{
    [Test]
    public void ALineEveryIntervalWithBytesPercentRateElapsedAndEta()
    {
        var now = TimeSpan.Zero;
        var lines = new List<string>();
        var p = new TimedProgress("converting", lines.Add, TimeSpan.FromSeconds(10), () => now);
        p.Start(1_000_000_000);
        now = TimeSpan.FromSeconds(4);
        p.Advance(40_000_000);
        Assert.That(lines, Is.Empty, "nothing before the interval");
        now = TimeSpan.FromSeconds(10);
        p.Advance(60_000_000);
        now = TimeSpan.FromSeconds(15);
        p.Advance(50_000_000);
        now = TimeSpan.FromSeconds(3725);
        p.Advance(50_000_000);
        Assert.That(lines, Is.EqualTo(new[]
        {
            "converting: 100.00 MB / 1.00 GB (10%), 10 MB/s, elapsed 0:00:10, ETA 0:01:30",
            "converting: 200.00 MB / 1.00 GB (20%), 0 MB/s, elapsed 1:02:05, ETA 4:08:20",
        }));
    }

    [Test]
    public void AbsoluteReportsAndAnUnknownRate()
    {
        var now = TimeSpan.Zero;
        var lines = new List<string>();
        var p = new TimedProgress("synth", lines.Add, TimeSpan.Zero, () => now);
        p.Report(0, 500);
        now = TimeSpan.FromSeconds(2);
        p.Report(500, 500);
        Assert.That(lines, Is.EqualTo(new[]
        {
            "synth: 0 B / 500 B (0%), 0 MB/s, elapsed 0:00:00, ETA unknown",
            "synth: 500 B / 500 B (100%), 0 MB/s, elapsed 0:00:02, ETA 0:00:00",
        }));
    }

    [Test]
    public void ConvertWithoutATerminalPrintsTimedLinesNotPercentSteps()
    {
        string dir = RepoPaths.NewTempDir("progress");
        string hf = Path.Combine(RepoPaths.Fixtures, "deepseek-v3");
        string? old = Environment.GetEnvironmentVariable("MTP_PROGRESS_SECONDS");
        try
        {
            // The test host's streams are pipes, as in CI. Default interval (10 s): a sub-second conversion prints no progress line.
            Environment.SetEnvironmentVariable("MTP_PROGRESS_SECONDS", null);
            var quick = CliRunner.Run("convert", hf, Path.Combine(dir, "a"), "--to", "native");
            Assert.That(quick.Code, Is.EqualTo(ExitCodes.Ok), quick.Err);
            Assert.That(quick.Err, Does.Not.Match(@"\d+%"), "no line per 10 %");

            Environment.SetEnvironmentVariable("MTP_PROGRESS_SECONDS", "0");
            var timed = CliRunner.Run("convert", hf, Path.Combine(dir, "b"), "--to", "native");
            Assert.That(timed.Code, Is.EqualTo(ExitCodes.Ok), timed.Err);
            var progress = timed.Err.Split('\n').Where(l => l.StartsWith("mtp: converting: ", StringComparison.Ordinal)).ToList();
            Assert.That(progress, Is.Not.Empty, timed.Err);
            Assert.That(progress, Has.All.Match(@"^mtp: converting: [\d.]+ k?B / 184\.88 kB \(\d+%\), \d+ MB/s, elapsed \d+:\d\d:\d\d, ETA (\d+:\d\d:\d\d|unknown)$"));
            Assert.That(timed.Out, Does.Not.Contain("converting"), "progress is log (stderr), not result");
        }
        finally
        {
            Environment.SetEnvironmentVariable("MTP_PROGRESS_SECONDS", old);
            Directory.Delete(dir, true);
        }
    }

    [Test]
    public void RoundtripPrintsTheSameTimedLines()
    {
        string hf = Path.Combine(RepoPaths.Fixtures, "deepseek-v3");
        string? old = Environment.GetEnvironmentVariable("MTP_PROGRESS_SECONDS");
        try
        {
            Environment.SetEnvironmentVariable("MTP_PROGRESS_SECONDS", null);
            var quick = CliRunner.Run("roundtrip", hf, "--work", Path.Combine(RepoPaths.NewTempDir("progress-rt"), "w"));
            Assert.That(quick.Code, Is.EqualTo(ExitCodes.Ok), quick.Err);
            Assert.That(quick.Err, Does.Not.Match(@"\d+%"), "no line per tenth of the bytes");

            Environment.SetEnvironmentVariable("MTP_PROGRESS_SECONDS", "0");
            var timed = CliRunner.Run("roundtrip", hf, "--work", Path.Combine(RepoPaths.NewTempDir("progress-rt"), "w"));
            Assert.That(timed.Code, Is.EqualTo(ExitCodes.Ok), timed.Err);
            foreach (string stage in new[] { "to native", "to hf" })
                Assert.That(timed.Err, Does.Match($@"(?m)^mtp: roundtrip: {stage}: .* \(\d+%\), \d+ MB/s, elapsed \d+:\d\d:\d\d, ETA "), stage);
        }
        finally { Environment.SetEnvironmentVariable("MTP_PROGRESS_SECONDS", old); }
    }

    [TestCase("2.5", 2.5)]
    [TestCase("0", 0.0)]
    [TestCase("-1", 10.0)]
    [TestCase("soon", 10.0)]
    [TestCase(null, 10.0)]
    public void TheIntervalComesFromTheEnvironment(string? value, double seconds)
    {
        string? old = Environment.GetEnvironmentVariable("MTP_PROGRESS_SECONDS");
        Environment.SetEnvironmentVariable("MTP_PROGRESS_SECONDS", value);
        try { Assert.That(TimedProgress.ConfiguredInterval(), Is.EqualTo(TimeSpan.FromSeconds(seconds))); }
        finally { Environment.SetEnvironmentVariable("MTP_PROGRESS_SECONDS", old); }
    }
}
