using Mtp.Tests.Shared;

namespace Mtp.Cli.Tests;

/// <summary>Help lists the values an option takes, shows required arguments as required, and `mtp` alone lists the commands.</summary>
public class HelpTests
{
    static string Help(params string[] command)
    {
        var (code, stdout, stderr) = CliRunner.Run(command.Append("--help").ToArray());
        Assert.That(code, Is.EqualTo(ExitCodes.Ok), stderr);
        return stdout;
    }

    [TestCase("convert", "--to <native|hf>", "--dtype <bf16|f32>", "--family <deepseek-v3|deepseek-v3.2|deepseek-v4|qwen3.5|qwen3-next|glm-4.5|glm-5|mimo|mimo-v2-flash>", "--expert-layout <stacked|per-expert>")]
    [TestCase("train", "--device <cpu|cuda|cuda:N>", "--dtype <bf16|f32>")]
    [TestCase("synth", "--family <deepseek-v3|deepseek-v3.2|deepseek-v4|qwen3.5|glm-4.5>", "--quant <bf16|fp8>")]
    [TestCase("demo", "--family <deepseek-v3|deepseek-v3.2|deepseek-v4|qwen3.5|glm-4.5>")]
    [TestCase("bench convert", "--family <deepseek-v3|deepseek-v3.2|deepseek-v4|qwen3.5|glm-4.5>", "--cache <auto|drop|warm>", "--page-cache <drop|keep>")]
    public void OptionsTakingOneOfAFewValuesListThem(string command, params string[] labels)
    {
        string help = Help(command.Split(' '));
        foreach (string label in labels) Assert.That(help, Does.Contain(label), command);
    }

    [Test]
    public void ConvertShowsInAndOutAsRequired()
    {
        string help = Help("convert");
        Assert.That(help, Does.Contain("mtp convert <in> <out> --to <native|hf> [options]"));
        Assert.That(help, Does.Contain("mtp convert --merge-index <out>"));
        Assert.That(help, Does.Not.Contain("[<in>"));
    }

    [Test]
    public void MtpAloneListsTheCommandsAndExitsWithUsage()
    {
        var (code, stdout, stderr) = CliRunner.Run();
        Assert.That(code, Is.EqualTo(ExitCodes.Usage), "nothing was done: a script that forgot the command fails");
        foreach (string c in new[] { "inspect", "convert", "verify", "train", "synth", "demo", "bench" })
            Assert.That(stdout, Does.Match($@"(?m)^  {c}\b"), c);
        Assert.That(stdout, Does.Contain("mtp <command> [options]"));
        Assert.That(stderr.Trim().Split('\n'), Has.Length.EqualTo(1));
        Assert.That(stderr, Does.StartWith("mtp: no command given").And.Not.Contain("Required command"));
    }

    [Test]
    public void BenchAloneListsItsCommands()
    {
        var (code, stdout, stderr) = CliRunner.Run("bench");
        Assert.That(code, Is.EqualTo(ExitCodes.Usage));
        Assert.That(stdout, Does.Match(@"(?m)^  kernels\b").And.Match(@"(?m)^  convert\b").And.Match(@"(?m)^  load\b").And.Match(@"(?m)^  train\b"));
        Assert.That(stderr, Does.StartWith("mtp: bench needs a command: kernels, convert, load or train"));
    }

    [Test]
    public void QuietIsAcceptedEverywhere()
    {
        foreach (string command in new[] { "inspect", "convert", "verify", "train", "synth", "demo", "bench kernels", "bench convert" })
            Assert.That(Help(command.Split(' ')), Does.Contain("-q, --quiet"), command);
    }
}
