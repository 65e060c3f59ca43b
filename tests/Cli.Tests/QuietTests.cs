using System.Text.Json.Nodes;
using Mtp.Tests.Shared;

namespace Mtp.Cli.Tests;

/// <summary>--quiet: nothing on success, on either stream; errors still print their one line.</summary>
public class QuietTests
{
    string _dir = "";
    CommandCases.Paths _paths = null!;

    [OneTimeSetUp]
    public void SetUp()
    {
        _dir = RepoPaths.NewTempDir("quiet");
        _paths = CommandCases.Prepare(_dir);
    }

    [OneTimeTearDown] public void TearDown() => Directory.Delete(_dir, true);

    [TestCaseSource(typeof(CommandCases), nameof(CommandCases.Names))]
    public void PrintsNothingOnSuccess(string name)
    {
        var (code, stdout, stderr) = CliRunner.Run(CommandCases.Args(name, _paths, "--quiet"));
        Assert.That(code, Is.EqualTo(ExitCodes.Ok), stderr + stdout);
        Assert.That(stdout, Is.Empty, name);
        Assert.That(stderr, Is.Empty, name);
    }

    [Test]
    public void MergeIndexIsQuietToo()
    {
        string out1 = Path.Combine(RepoPaths.NewTempDir("quiet-merge"), "out");
        Assert.That(CliRunner.Run("convert", _paths.Hf, out1, "--to", "native", "--part", "1/1", "-q").Code, Is.EqualTo(ExitCodes.Ok));
        var (code, stdout, stderr) = CliRunner.Run("convert", "--merge-index", out1, "--quiet");
        Assert.That(code, Is.EqualTo(ExitCodes.Ok), stderr);
        Assert.That(stdout + stderr, Is.Empty);
    }

    [Test]
    public void AnErrorStillPrintsItsOneLine()
    {
        var (code, stdout, stderr) = CliRunner.Run("convert", Path.Combine(_dir, "nope"), Path.Combine(_dir, "x"), "--to", "native", "--quiet");
        Assert.That(code, Is.EqualTo(ExitCodes.Usage));
        Assert.That(stdout, Is.Empty);
        Assert.That(stderr.Trim().Split('\n'), Has.Length.EqualTo(1));
        Assert.That(stderr, Does.StartWith("mtp: ").And.Contain("nope"));
    }

    [Test]
    public void WithJsonOnlyTheDocumentIsPrinted()
    {
        var (code, stdout, stderr) = CliRunner.Run("inspect", _paths.Hf, "--json", "--quiet");
        Assert.That(code, Is.EqualTo(ExitCodes.Ok), stderr);
        Assert.That(JsonNode.Parse(stdout)!["family"]!.GetValue<string>(), Is.EqualTo("deepseek-v3"));
        Assert.That(stderr, Is.Empty);
    }
}
