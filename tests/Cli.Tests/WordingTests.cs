using System.Text.Json.Nodes;
using Mtp.Adapters;
using Mtp.Cli.Demo;
using Mtp.SafeTensors;
using Mtp.Tests.Shared;

namespace Mtp.Cli.Tests;

/// <summary>What the commands say: the project's own terms, counts in the right number, and errors an operator can act on.</summary>
public class WordingTests
{
    string _dir = "";

    [SetUp] public void SetUp() => _dir = RepoPaths.NewTempDir("wording");
    [TearDown] public void TearDown() => Directory.Delete(_dir, true);

    static string Fixture(string name) => Path.Combine(RepoPaths.Fixtures, name);

    string Native()
    {
        string nat = Path.Combine(_dir, "native");
        Assert.That(CliRunner.Run("convert", Fixture("deepseek-v3"), nat, "--to", "native", "--json").Code, Is.EqualTo(ExitCodes.Ok));
        return nat;
    }

    [Test]
    public void InspectCallsTrainingExpertsStackedAsConvertAndTheReadmeDo()
    {
        var (code, stdout, _) = CliRunner.Run("inspect", Native(), "--json");
        Assert.That(code, Is.EqualTo(ExitCodes.Ok));
        Assert.That(JsonNode.Parse(stdout)!["expert_layout"]!.GetValue<string>(), Is.EqualTo("stacked"));
    }

    [Test]
    public void TrainCountsInTheRightNumber()
    {
        var (code, stdout, err) = CliRunner.Run("train", Native(), "--steps", "1");
        Assert.That(code, Is.EqualTo(ExitCodes.Ok), err);
        Assert.That(err, Does.Contain("+ 1 MTP depth,"), "the log line on stderr");
        Assert.That(stdout, Does.Contain("1 step in"), "the summary, a result, on stdout");
        Assert.That(err + stdout, Does.Not.Contain("1 steps").And.Not.Contain("depth(s)").And.Not.Contain("first step excluded"));
    }

    [Test]
    public void TrainHelpNamesEveryFamily()
    {
        var (_, stdout, _) = CliRunner.Run("train", "--help");
        Assert.That(stdout, Does.Not.Contain("Train a DeepSeek-V3 checkpoint"));
        // Every family with a model, as users write them.
        foreach (string name in new[] { "DeepSeek-V3", "V3.2", "V4", "Qwen3.5", "Qwen3-Next", "GLM-4.5", "GLM-5" })
            Assert.That(stdout, Does.Contain(name));
        Assert.That(Mtp.Model.ModelRegistry.Families, Has.Count.EqualTo(7), "a new family with a model: name it in train's description");
    }

    [Test]
    public void OneShardInspectedAloneDoesNotBlameTheOthers()
    {
        string shard = Path.Combine(Fixture("deepseek-v3"), "model-00001-of-00002.safetensors");
        var (code, stdout, err) = CliRunner.Run("inspect", shard, "--json");
        var report = JsonNode.Parse(stdout)!;
        Assert.That(code, Is.EqualTo(ExitCodes.Ok), err);
        Assert.That(report["problems"]!.AsArray(), Is.Empty);
        Assert.That(report["warnings"]!.AsArray().Select(w => w!.GetValue<string>()), Has.Some.Contain("1 of 2 shards"));
    }

    [Test]
    public void AFileOfAnotherKindIsNotASafetensorsFile()
    {
        string notes = Path.Combine(_dir, "notes.safetensors");
        File.WriteAllText(notes, "These are my notes about the model, not tensors.\n");
        var (code, _, err) = CliRunner.Run("inspect", notes);
        Assert.That(code, Is.EqualTo(ExitCodes.Malformed));
        Assert.That(err, Does.Contain($"{notes}: not a safetensors file").And.Not.Contain("exceeds the cap"));
    }

    [Test]
    public void DemoExportLineDescribesTheSourceScheme()
    {
        // The BF16 Qwen3.5 release has nothing to re-quantize; DeepSeek-V3's 167 tensors hold 68 FP8 weights.
        var qwen = DemoPipeline.QuantizedWeights(Fixture("qwen3.5-moe"));
        Assert.That(qwen, Is.EqualTo((0, "unquantized")));
        string q = DemoPipeline.ExportDetail(107, qwen, 0, 0, "OUT");
        Assert.That(q, Does.Not.Contain("re-quantized").And.Not.Contain("FP8").And.Contain("not quantized"));

        var v3 = DemoPipeline.QuantizedWeights(Fixture("deepseek-v3"));
        int fp8;
        using (var ck = Checkpoint.Open(Fixture("deepseek-v3"))) fp8 = ck.Tensors.Count(t => t.Info.DType == DType.F8_E4M3);
        Assert.That(v3, Is.EqualTo((fp8, "FP8")));
        Assert.That(DemoPipeline.ExportDetail(167, v3, 1, 2, "OUT"), Does.StartWith($"167 tensors, {fp8} of them weights re-quantized to FP8 ").And.Contain("(1 weight needed 2 new"));
        Assert.That(DemoPipeline.QuantizedWeights(Fixture("deepseek-v4-flash")).Scheme, Is.EqualTo("FP8 + FP4"));
    }

    [Test]
    public void NaNScaleErrorSaysTheFileIsDamagedNotACSharpOption()
    {
        string hf = Path.Combine(_dir, "hf");
        Directory.CreateDirectory(hf);
        foreach (string f in Directory.GetFiles(Fixture("deepseek-v3"))) File.Copy(f, Path.Combine(hf, Path.GetFileName(f)));
        string scaleName, shard;
        long at;
        using (var ck = Checkpoint.Open(hf))
        {
            var scale = ck.Tensors.First(t => t.Name.EndsWith("_scale_inv", StringComparison.Ordinal) && t.Info.DType == DType.F32);
            (scaleName, shard, at) = (scale.Name, scale.File.Path, scale.File.AbsoluteOffset(scale.Info));
        }
        using (var fs = new FileStream(shard, FileMode.Open, FileAccess.Write))
        {
            fs.Position = at;
            fs.Write(BitConverter.GetBytes(float.NaN));
        }
        var (code, _, err) = CliRunner.Run("convert", hf, Path.Combine(_dir, "out"), "--to", "native");
        string line = err.Split('\n', StringSplitOptions.RemoveEmptyEntries).Last();
        Assert.That(code, Is.EqualTo(ExitCodes.Malformed), err);
        Assert.That(line, Does.Not.Contain("KernelOptions").And.Contain("damaged"));
        Assert.That(line, Does.Contain(scaleName[..^"_scale_inv".Length]));
    }

    [Test]
    public void AnIoErrorNamingARemovedOutputStillReportsItsFile()
    {
        // A disk-full write removes the partial output, but the message names it: --json must too.
        string gone = Path.Combine(_dir, "out");
        string message = $"{gone}: {gone}.partial-1/model-00001-of-00002.safetensors: write at byte 0: No space left on device (errno 28)";
        var (oldOut, oldErr) = (Console.Out, Console.Error);
        var (o, e) = (new StringWriter(), new StringWriter());
        int code;
        Console.SetOut(o);
        Console.SetError(e);
        try { code = CommandRunner.Run(() => throw new AdapterException(AdapterErrorKind.Io, message), verbose: false, json: true); }
        finally
        {
            Console.SetOut(oldOut);
            Console.SetError(oldErr);
        }
        Assert.That(code, Is.EqualTo(ExitCodes.Io));
        var err = JsonNode.Parse(o.ToString())!["error"]!;
        Assert.That(err["class"]!.GetValue<string>(), Is.EqualTo("io"));
        Assert.That(err["file"]?.GetValue<string>(), Is.EqualTo(gone));
    }
}
