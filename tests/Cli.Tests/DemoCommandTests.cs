using Mtp.Adapters.Synthetic;
using Mtp.Cli.Demo;
using Mtp.Model;
using Mtp.Tests.Shared;

namespace Mtp.Cli.Tests;

public class DemoCommandTests
{
    [Test]
    public void DeepSeekV3DemoRunsEveryStage()
    {
        string dir = RepoPaths.NewTempDir("demo");
        var (code, stdout, stderr) = CliRunner.Run("demo", "--work", dir, "--steps", "4");
        Assert.That(code, Is.EqualTo(0), stdout + stderr);
        foreach (string stage in new[] { "synthesize", "inspect", "convert to training layout", "round trip untrained", "train", "export trained", "re-import trained" })
            Assert.That(stdout, Does.Contain(stage));
        Assert.That(stdout, Does.Contain("byte-identical"));
        Assert.That(stdout, Does.Not.Contain("missing").And.Not.Contain("failed"));
        Assert.That(File.Exists(Path.Combine(dir, "trained", "config.json")));
        Directory.Delete(dir, true);
    }

    [Test]
    public void TheDefaultWorkDirIsRemovedUnlessKept()
    {
        // The default work dir lies under the temp dir: point TMPDIR at a folder of this test to see what is left.
        string tmp = RepoPaths.NewTempDir("demo-tmp");
        string? old = Environment.GetEnvironmentVariable("TMPDIR");
        Environment.SetEnvironmentVariable("TMPDIR", tmp);
        try
        {
            var removed = CliRunner.Run("demo", "--steps", "0");
            Assert.That(removed.Code, Is.EqualTo(0), removed.Out + removed.Err);
            Assert.That(Directory.GetFileSystemEntries(tmp), Is.Empty, "the demo removes its default work dir");

            var kept = CliRunner.Run("demo", "--steps", "0", "--keep");
            Assert.That(kept.Code, Is.EqualTo(0), kept.Out + kept.Err);
            var left = Directory.GetDirectories(tmp);
            Assert.That(left.Select(Path.GetFileName), Has.Exactly(1).StartsWith("mtp-demo-"));
            Assert.That(Directory.EnumerateFileSystemEntries(left[0]).Any(), "--keep keeps the checkpoints");
        }
        finally { Environment.SetEnvironmentVariable("TMPDIR", old); }
    }

    [TestCaseSource(typeof(SynthModel), nameof(SynthModel.Families))]
    public void EveryFamilyRunsOrSaysWhichStageIsMissing(string family)
    {
        string dir = RepoPaths.NewTempDir("demo-" + family);
        var pipeline = new DemoPipeline(family, dir, 2, _ => { });
        bool ok = pipeline.Run();
        Assert.That(ok, Is.True, string.Join("\n", pipeline.Stages.Select(s => $"{s.Name}: {s.Status}: {s.Detail}")));
        Assert.That(pipeline.Stages.Take(4).Select(s => s.Status), Is.All.EqualTo("ok"), "conversion stages exist for every family");
        foreach (var s in pipeline.Stages.Skip(4))
        {
            Assert.That(s.Status, Is.EqualTo("ok").Or.EqualTo("missing"), s.Name);
            if (s.Status == "missing") Assert.That(s.Detail, Does.Contain("no TorchSharp model"));
        }
        Directory.Delete(dir, true);
    }
}
