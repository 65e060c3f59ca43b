using System.Text.Json.Nodes;
using Mtp.Tests.Shared;

namespace Mtp.Cli.Tests;

public class ConvertVerifyCommandTests
{
    string _dir = "";

    [SetUp] public void SetUp() => _dir = RepoPaths.NewTempDir("cli-convert");
    [TearDown] public void TearDown() => Directory.Delete(_dir, true);

    [Test]
    public void RoundTripThroughTheCommandLineIsByteIdentical()
    {
        string hf = Path.Combine(RepoPaths.Fixtures, "deepseek-v3");
        string native = Path.Combine(_dir, "native"), back = Path.Combine(_dir, "back");
        var r1 = CliRunner.Run("convert", hf, native, "--to", "native");
        Assert.That(r1.Code, Is.EqualTo(0), r1.Err);
        var r2 = CliRunner.Run("convert", native, back, "--to", "hf", "--reference", hf);
        Assert.That(r2.Code, Is.EqualTo(0), r2.Err);
        var v = CliRunner.Run("verify", "--json", hf, back);
        Assert.That(v.Code, Is.EqualTo(0), v.Out);
        Assert.That((bool)JsonNode.Parse(v.Out)!["identical"]!, Is.True);
    }

    [Test]
    public void VerifyOfDifferentCheckpointsExitsWithDifferent()
    {
        string hf = Path.Combine(RepoPaths.Fixtures, "deepseek-v3");
        string native = Path.Combine(_dir, "native");
        Assert.That(CliRunner.Run("convert", hf, native, "--to", "native").Code, Is.EqualTo(0));
        var v = CliRunner.Run("verify", hf, native);
        Assert.That(v.Code, Is.EqualTo(ExitCodes.Different));
        Assert.That(v.Out, Does.Contain("different"));
    }

    [Test]
    public void BadOptionValuesAreUsageErrorsOnOneLine()
    {
        var r = CliRunner.Run("convert", Path.Combine(RepoPaths.Fixtures, "deepseek-v3"), Path.Combine(_dir, "x"), "--to", "sideways");
        Assert.That(r.Code, Is.EqualTo(ExitCodes.Usage));
        Assert.That(r.Err.Trim().Split('\n'), Has.Length.EqualTo(1));
        Assert.That(r.Err, Does.Contain("--to"));
        Assert.That(Directory.Exists(Path.Combine(_dir, "x")), Is.False);
    }

    [Test]
    public void MissingInputIsAUsageErrorAndJsonErrorsCarryTheClass()
    {
        var r = CliRunner.Run("verify", "--json", "/nonexistent/a", Path.Combine(RepoPaths.Fixtures, "deepseek-v3"));
        Assert.That(r.Code, Is.EqualTo(ExitCodes.Usage));
        Assert.That((string)JsonNode.Parse(r.Out)!["error"]!["class"]!, Is.EqualTo("usage"));
    }
}
