using System.Text.Json.Nodes;
using Mtp.Tests.Shared;

namespace Mtp.Cli.Tests;

/// <summary>
/// conversion.json is read back by convert --to hf: a field of the wrong kind is malformed input (exit 3) naming the
/// file and the field, never an internal error (issue 15 item 12: fuzz seed 20261202 found numbers of the wrong kind
/// and a bit-flipped key ending in InvalidOperationException / NullReferenceException).
/// </summary>
public class ConversionReportValidationTests
{
    string _dir = "";
    string _native = "";

    [OneTimeSetUp]
    public void ConvertTheFixtureOnce()
    {
        _dir = RepoPaths.NewTempDir("report-validation");
        _native = Path.Combine(_dir, "native");
        var r = CliRunner.Run("convert", Path.Combine(RepoPaths.Fixtures, "deepseek-v3"), _native, "--to", "native");
        Assert.That(r.Code, Is.EqualTo(0), r.Err);
    }

    [OneTimeTearDown] public void RemoveTheWorkDir() => Directory.Delete(_dir, true);

    static JsonObject FirstTensor(JsonObject report) => report["source_tensors"]!.AsArray()[0]!.AsObject();

    static readonly (string Case, Action<JsonObject> Edit, string Field)[] Edits =
    {
        ("dimension above Int64", r => FirstTensor(r)["shape"]!.AsArray()[0] = JsonNode.Parse("18446744073709551615"), "source_tensors[0].shape[0]"),
        ("dimension 1e30", r => FirstTensor(r)["shape"]!.AsArray()[0] = JsonNode.Parse("1e30"), "source_tensors[0].shape[0]"),
        ("dimension 0.5", r => FirstTensor(r)["shape"]!.AsArray()[0] = JsonNode.Parse("0.5"), "source_tensors[0].shape[0]"),
        ("negative dimension", r => FirstTensor(r)["shape"]!.AsArray()[0] = -1, "source_tensors[0].shape[0]"),
        ("dimension as a string", r => FirstTensor(r)["shape"]!.AsArray()[0] = "7", "source_tensors[0].shape[0]"),
        ("key with a flipped bit", r => { var t = FirstTensor(r); var d = t["dtype"]; t.Remove("dtype"); t["dtypd"] = d?.DeepClone(); }, "source_tensors[0].dtype"),
        ("unknown dtype", r => FirstTensor(r)["dtype"] = "F33", "source_tensors[0].dtype"),
        ("name as a number", r => FirstTensor(r)["name"] = 12, "source_tensors[0].name"),
        ("shape as a number", r => FirstTensor(r)["shape"] = 3, "source_tensors[0].shape"),
        ("tensor as a number", r => r["source_tensors"]!.AsArray()[0] = 1, "source_tensors[0]"),
        ("tensors as an object", r => r["source_tensors"] = new JsonObject(), "source_tensors"),
        ("family as a number", r => r["family"] = 1e30, "family"),
        ("quantization config as a number", r => r["source_quantization_config"] = 0.5, "source_quantization_config"),
    };

    static IEnumerable<TestCaseData> Cases() => Edits.Select((e, i) => new TestCaseData(i).SetName("WrongKindIsMalformed_" + e.Case.Replace(' ', '_')));

    [TestCaseSource(nameof(Cases))]
    public void AFieldOfTheWrongKindIsMalformedInputNamingFileAndField(int index)
    {
        var (_, edit, field) = Edits[index];
        string input = Path.Combine(_dir, "in" + index), output = Path.Combine(_dir, "out" + index);
        Directory.CreateDirectory(input);
        foreach (string f in Directory.GetFiles(_native)) File.Copy(f, Path.Combine(input, Path.GetFileName(f)));
        string reportPath = Path.Combine(input, "conversion.json");
        var report = JsonNode.Parse(File.ReadAllText(reportPath))!.AsObject();
        edit(report);
        File.WriteAllText(reportPath, report.ToJsonString());

        var r = CliRunner.Run("convert", input, output, "--to", "hf", "--json");

        Assert.That(r.Code, Is.EqualTo(ExitCodes.Malformed), r.Err);
        Assert.That(r.Err.Trim().Split('\n'), Has.Length.EqualTo(1), r.Err);
        Assert.That(r.Err, Does.Contain(reportPath).And.Contain($"'{field}'"));
        Assert.That((string)JsonNode.Parse(r.Out)!["error"]!["file"]!, Is.EqualTo(reportPath));
        Assert.That(Directory.Exists(output), Is.False);
    }

    [Test]
    public void TheReportConvertWritesIsAccepted()
    {
        var r = CliRunner.Run("convert", _native, Path.Combine(_dir, "back"), "--to", "hf");
        Assert.That(r.Code, Is.EqualTo(0), r.Err);
    }
}
