using System.Text.Json.Nodes;
using Mtp.Tests.Shared;

namespace Mtp.Cli.Tests;

/// <summary>
/// <c>mtp eval</c> on the converted DeepSeek-V3 fixture: the same numbers run to run and across a lossless round trip,
/// the --json document's shape and arithmetic, and one-line errors for bad input.
/// </summary>
public class EvalCommandTests
{
    string _dir = "", _native = "", _native32 = "", _back32 = "", _data = "";

    [OneTimeSetUp]
    public void Convert()
    {
        _dir = RepoPaths.NewTempDir("cli-eval");
        string hf = Path.Combine(RepoPaths.Fixtures, "deepseek-v3");
        _native = Path.Combine(_dir, "native");
        _native32 = Path.Combine(_dir, "native-f32");
        _back32 = Path.Combine(_dir, "back-f32");
        string hf32 = Path.Combine(_dir, "hf-f32");
        Ok(CliRunner.Run("convert", hf, _native, "--to", "native"));
        // F32 all the way: training layout -> unquantized HF -> training layout again, which loses nothing.
        Ok(CliRunner.Run("convert", hf, _native32, "--to", "native", "--dtype", "f32"));
        Ok(CliRunner.Run("convert", _native32, hf32, "--to", "hf", "--dtype", "f32"));
        Ok(CliRunner.Run("convert", hf32, _back32, "--to", "native", "--dtype", "f32"));
        _data = Path.Combine(_dir, "tokens.jsonl");
        File.WriteAllText(_data, "[1, 6, 33, 168, 75, 122, 97, 232, 137, 176]\n[9, 48, 243, 194, 209, 20, 103, 6, 33, 168, 75, 122]\n");
    }

    [OneTimeTearDown] public void TearDown() => Directory.Delete(_dir, true);

    static void Ok((int Code, string Out, string Err) r) => Assert.That(r.Code, Is.EqualTo(ExitCodes.Ok), r.Err + r.Out);

    static JsonObject Json(params string[] args)
    {
        var r = CliRunner.Run(new[] { "eval" }.Concat(args).Append("--json").ToArray());
        Ok(r);
        Assert.That(r.Err, Is.Empty);
        return (JsonObject)JsonNode.Parse(r.Out)!;
    }

    // The document without what may differ between equal evaluations: the folder's name and the wall time.
    static string Numbers(JsonObject doc)
    {
        var copy = (JsonObject)doc.DeepClone();
        copy.Remove("checkpoint");
        copy.Remove("seconds");
        return copy.ToJsonString();
    }

    [Test]
    public void TextOutputIsTheSameTwiceAndAgreesWithJson()
    {
        string[] args = ["eval", _native, "--batches", "3", "--seq-len", "32"];
        var a = CliRunner.Run(args);
        var b = CliRunner.Run(args);
        Ok(a);
        Assert.That(b.Out, Is.EqualTo(a.Out));
        Assert.That(a.Out, Does.Contain("depth").And.Contain("acceptance").And.Contain("conditioned"));
        Assert.That(a.Err, Does.Contain("evaluating deepseek-v3"), "what is evaluated is logged on stderr");
        var doc = Json(args[1..]);
        var inv = System.Globalization.CultureInfo.InvariantCulture;
        Assert.That(a.Out, Does.Contain($"main loss {doc["main"]!["loss"]!.GetValue<double>().ToString("F4", inv)}, "));
        var d1 = doc["depths"]![0]!;
        Assert.That(a.Out, Does.Contain($"({d1["accepted"]}/{d1["labels"]})"));
        Assert.That(a.Out, Does.Contain($"expected accepted length {doc["expected_accepted_length"]!.GetValue<double>().ToString("F4", inv)} tokens per step"));
    }

    [Test]
    public void JsonHoldsEveryFigureWithConsistentArithmetic()
    {
        var doc = Json(_native, "--batches", "2", "--batch", "3", "--seq-len", "16", "--seed", "4");
        Assert.That(doc["ok"]!.GetValue<bool>());
        Assert.That(doc["family"]!.GetValue<string>(), Is.EqualTo("deepseek-v3"));
        Assert.That(doc["data"]!["kind"]!.GetValue<string>(), Is.EqualTo("synthetic"));
        Assert.That(doc["data"]!["seed"]!.GetValue<long>(), Is.EqualTo(4));
        Assert.That(doc["tokens"]!.GetValue<long>(), Is.EqualTo(2 * 3 * 16));
        double loss = doc["main"]!["loss"]!.GetValue<double>();
        Assert.That(doc["main"]!["perplexity"]!.GetValue<double>(), Is.EqualTo(Math.Exp(loss)).Within(1e-9).Percent);
        long labels = doc["main"]!["labels"]!.GetValue<long>();
        Assert.That(labels, Is.LessThan(2 * 3 * 16).And.GreaterThan(2 * 3 * 16 / 2), "one label fewer per packed document");
        var depths = doc["depths"]!.AsArray();
        Assert.That(depths, Has.Count.EqualTo(1), "the fixture has one MTP depth");
        var d = depths[0]!;
        Assert.That(d["depth"]!.GetValue<int>(), Is.EqualTo(1));
        Assert.That(d["loss"]!.GetValue<double>(), Is.GreaterThan(0));
        long dl = d["labels"]!.GetValue<long>(), acc = d["accepted"]!.GetValue<long>();
        Assert.That(dl, Is.LessThan(labels), "depth 1 loses one more label per document");
        Assert.That(d["acceptance"]!.GetValue<double>(), Is.EqualTo((double)acc / dl));
        Assert.That(d["conditioned_tried"]!.GetValue<long>(), Is.EqualTo(dl), "depth 1 is always tried");
        Assert.That(d["conditioned_accepted"]!.GetValue<long>(), Is.EqualTo(acc));
        Assert.That(doc["expected_length_positions"]!.GetValue<long>(), Is.EqualTo(dl));
        Assert.That(doc["expected_accepted_length"]!.GetValue<double>(), Is.EqualTo(1 + (double)acc / dl));
        Assert.That(Numbers(Json(_native, "--batches", "2", "--batch", "3", "--seq-len", "16", "--seed", "5")), Is.Not.EqualTo(Numbers(doc)),
            "another seed draws other batches");
    }

    [Test]
    public void ADataFileIsEvaluatedFromItsStart()
    {
        var doc = Json(_native, "--data", _data, "--batches", "2", "--seq-len", "8");
        Assert.That(doc["data"]!["kind"]!.GetValue<string>(), Is.EqualTo("file"));
        Assert.That(doc["data"]!["path"]!.GetValue<string>(), Is.EqualTo(_data));
        Assert.That(Numbers(Json(_native, "--data", _data, "--batches", "2", "--seq-len", "8")), Is.EqualTo(Numbers(doc)));
    }

    [Test]
    public void ALosslessRoundTripGivesIdenticalNumbers()
    {
        string[] rest = ["--dtype", "f32", "--batches", "3", "--seq-len", "32"];
        var before = Json([_native32, .. rest]);
        var after = Json([_back32, .. rest]);
        Assert.That(Numbers(after), Is.EqualTo(Numbers(before)));
        // The comparison sees a change as small as rounding the same weights to BF16.
        Assert.That(Numbers(Json(_native32, "--batches", "3", "--seq-len", "32")), Is.Not.EqualTo(Numbers(before)));
    }

    [TestCase("deepseek-v3", "bf16")]
    [TestCase("deepseek-v3", "f32")]
    [TestCase("deepseek-v4-flash", "bf16")]
    [TestCase("deepseek-v4-legacy-mtp", "bf16")]
    [TestCase("qwen3.5-moe", "bf16")]
    [TestCase("qwen3.5-moe-fp8", "bf16")]
    [TestCase("glm-4.5", "bf16")]
    [TestCase("glm-4.5-fp8", "bf16")]
    [TestCase("deepseek-v3.2", "bf16")]
    [TestCase("qwen3-next", "bf16")]
    public void AnHfFixtureEvaluatesLikeItsConversion(string fixture, string dtype)
    {
        string hf = Path.Combine(RepoPaths.Fixtures, fixture);
        string native = Path.Combine(_dir, $"{fixture}-{dtype}");
        if (!Directory.Exists(native)) Ok(CliRunner.Run("convert", hf, native, "--to", "native", "--dtype", dtype));
        string[] rest = ["--dtype", dtype, "--batches", "2", "--seq-len", "32"];
        var direct = Json([hf, .. rest]);
        Assert.That(Numbers(direct), Is.EqualTo(Numbers(Json([native, .. rest]))));
        Assert.That(direct["depths"]!.AsArray(), Has.Count.GreaterThan(0), "the MTP depths were evaluated");
    }

    [Test]
    public void HelpListsTheValuesOfDtypeAndDevice()
    {
        var (code, stdout, stderr) = CliRunner.Run("eval", "--help");
        Assert.That(code, Is.EqualTo(ExitCodes.Ok), stderr);
        Assert.That(stdout, Does.Contain("--dtype <bf16|f32>").And.Contain("--device <cpu|cuda|cuda:N>").And.Contain("--batches"));
    }

    [Test]
    public void DeviceCudaWithoutCudaIsAUsageError()
    {
        if (TorchSharp.torch.cuda.is_available()) Assert.Ignore("this machine has CUDA, so --device cuda is not a mistake here");
        var (code, _, stderr) = CliRunner.Run("eval", _native, "--device", "cuda");
        Assert.That(code, Is.EqualTo(ExitCodes.Usage), stderr);
        Assert.That(stderr.Trim().Split('\n'), Has.Length.EqualTo(1), stderr);
        Assert.That(stderr, Does.StartWith("mtp: --device cuda: no CUDA device"));
    }

    [TestCase("{nope}", new string[0], ExitCodes.Usage, "no such directory")]
    [TestCase("{native}", new[] { "--threads", "-3" }, ExitCodes.Usage, "--threads")]
    [TestCase("{native}", new[] { "--seq-len", "1" }, ExitCodes.Usage, "--seq-len")]
    [TestCase("{file}", new string[0], ExitCodes.Usage, "is a file")]
    [TestCase("{native}", new[] { "--data", "{nope}" }, ExitCodes.Usage, "--data")]
    [TestCase("{native}", new[] { "--data", "{garbage}" }, ExitCodes.Malformed, "{garbage}")]
    [TestCase("{native}", new[] { "--batches", "0" }, ExitCodes.Usage, "--batches")]
    [TestCase("{native}", new[] { "--dtype", "fp16" }, ExitCodes.Usage, "--dtype")]
    [TestCase("{empty}", new string[0], ExitCodes.Malformed, "config.json")]
    public void BadInputIsOneLineWithItsExitCode(string ckpt, string[] extra, int code, string names)
    {
        string empty = Directory.CreateDirectory(Path.Combine(_dir, "empty")).FullName;
        string garbage = Path.Combine(_dir, "garbage.jsonl");
        File.WriteAllText(garbage, "[1, 2, 3]\n[4, 5,\n");
        string Fill(string s) => s.Replace("{nope}", Path.Combine(_dir, "nope")).Replace("{native}", _native).Replace("{garbage}", garbage)
            .Replace("{file}", _data).Replace("{empty}", empty);
        foreach (bool json in new[] { false, true })
        {
            var args = new[] { "eval", Fill(ckpt) }.Concat(extra.Select(Fill)).Concat(json ? ["--json"] : Array.Empty<string>()).ToArray();
            var (exit, stdout, stderr) = CliRunner.Run(args);
            Assert.That(exit, Is.EqualTo(code), stderr);
            string[] lines = stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries);
            Assert.That(lines, Has.Length.EqualTo(1), stderr);
            Assert.That(lines[0], Does.StartWith("mtp: ").And.Contain(Fill(names)));
            if (json) Assert.That(JsonNode.Parse(stdout)!["error"]!["class"]!.GetValue<string>(), Is.EqualTo(ExitCodes.ClassName(code)), stdout);
            else Assert.That(stdout, Is.Empty);
        }
    }
}
