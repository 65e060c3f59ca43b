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
