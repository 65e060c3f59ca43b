using Mtp.Adapters;
using Mtp.Tests.Shared;

namespace Mtp.Cli.Tests;

/// <summary>Every command that takes --family knows every id convert accepts, and says why when it cannot make one.</summary>
public class FamilyIdTests
{
    static string Out() => Path.Combine(RepoPaths.NewTempDir("family"), "out");

    static readonly string[][] Synthesizing =
    {
        new[] { "synth", "{out}" },
        new[] { "demo", "--work", "{out}", "--steps", "0" },
        new[] { "bench", "convert", "--work", "{out}", "--size", "64MB" },
    };

    [TestCaseSource(nameof(Synthesizing))]
    public void QwenNextIsRefusedWithTheReasonNotAsUnknown(string[] command)
    {
        string output = Out();
        var args = command.Select(a => a.Replace("{out}", output)).Concat(new[] { "--family", "qwen3-next" }).ToArray();
        var (code, stdout, stderr) = CliRunner.Run(args);
        Assert.That(code, Is.EqualTo(ExitCodes.Usage), stdout + stderr);
        Assert.That(stderr.Trim().Split('\n'), Has.Length.EqualTo(1), stderr);
        Assert.That(stderr, Does.Contain("cannot synthesize qwen3-next").And.Contain("no synthetic qwen3-next layout"), stderr);
        Assert.That(stderr, Does.Contain("convert, inspect, verify and train read qwen3-next"));
        Assert.That(Directory.Exists(output), Is.False, "refused before anything is written");
    }

    [Test]
    public void AFamilyWithoutAModelIsNotSaidToTrain()
    {
        var (code, _, stderr) = CliRunner.Run("synth", Out(), "--family", "mimo");
        Assert.That(code, Is.EqualTo(ExitCodes.Usage), stderr);
        Assert.That(stderr, Does.Contain("convert, inspect and verify read mimo").And.Not.Contain("train"), stderr);
    }

    [Test]
    public void ConvertAcceptsEveryFamilyIdAndListsThemForAnUnknownOne()
    {
        string missing = Path.Combine(RepoPaths.NewTempDir("family-convert"), "missing");
        foreach (string id in Families.All)
        {
            var r = CliRunner.Run("convert", missing, Out(), "--to", "native", "--family", id);
            Assert.That(r.Err, Does.Not.Contain("--family must"), id);
            Assert.That(r.Err, Does.Contain("missing"), "fails on the missing input, after the family was accepted");
        }
        var bad = CliRunner.Run("convert", missing, Out(), "--to", "native", "--family", "llama");
        Assert.That(bad.Code, Is.EqualTo(ExitCodes.Usage));
        Assert.That(bad.Err.Trim(), Is.EqualTo("mtp: --family must be deepseek-v3, deepseek-v3.2, deepseek-v4, qwen3.5, qwen3-next, glm-4.5, glm-5, mimo or mimo-v2-flash, not 'llama'"));
    }

    [TestCase("glm-4.5")]
    [TestCase("deepseek-v3.2")]
    public void DemoAndRoundtripRunTheNewFamiliesEndToEnd(string family)
    {
        string work = Out();
        var demo = CliRunner.Run("demo", "--work", work, "--steps", "2", "--family", family, "--json");
        Assert.That(demo.Code, Is.EqualTo(ExitCodes.Ok), demo.Out + demo.Err);
        Assert.That(demo.Out, Does.Contain($"\"family\": \"{family}\""));
        var rt = CliRunner.Run("roundtrip", Path.Combine(work, "hf"), "--json");
        Assert.That(rt.Code, Is.EqualTo(ExitCodes.Ok), rt.Out + rt.Err);
    }

    [Test]
    public void SynthTakesTheSpellingsConvertTakes()
    {
        // convert reads --family through Families.Normalize (model_type spellings too); synth does the same.
        var (code, stdout, stderr) = CliRunner.Run("synth", "--family", "deepseek_v3", "--json", Out());
        Assert.That(code, Is.EqualTo(ExitCodes.Ok), stderr);
        Assert.That(stdout, Does.Contain("\"family\": \"deepseek-v3\""));
    }
}
