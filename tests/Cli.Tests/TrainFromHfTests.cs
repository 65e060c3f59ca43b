using System.Text.Json.Nodes;
using Mtp.SafeTensors;
using Mtp.Tests.Shared;

namespace Mtp.Cli.Tests;

/// <summary>
/// <c>mtp train HF_DIR</c>: a released checkpoint trains with no conversion on disk, and <c>--save-as hf</c> writes the
/// trained weights back in the source's format, equal to training from the converted copy and exporting it.
/// </summary>
public class TrainFromHfTests
{
    string _dir = "";

    [SetUp] public void SetUp() => _dir = RepoPaths.NewTempDir("cli-trainhf");
    [TearDown] public void TearDown() => Directory.Delete(_dir, true);

    static void Ok((int Code, string Out, string Err) r) => Assert.That(r.Code, Is.EqualTo(0), r.Err);

    static string Fixture(string name) => Path.Combine(RepoPaths.Fixtures, name);

    /// <summary>Every tensor's name, dtype, shape and bytes.</summary>
    static Dictionary<string, (string Header, byte[] Bytes)> Tensors(string dir)
    {
        using var c = Checkpoint.Open(dir);
        return c.Tensors.ToDictionary(t => t.Name, t => ($"{t.Info.DType} {t.Info.ShapeText}", t.File.GetBytes(t.Info).ToArray()), StringComparer.Ordinal);
    }

    [TestCase("deepseek-v3")]
    [TestCase("deepseek-v4-flash")]
    [TestCase("deepseek-v4-legacy-mtp")]
    [TestCase("qwen3.5-moe")]
    [TestCase("qwen3.5-moe-fp8")]
    [TestCase("glm-4.5")]
    [TestCase("glm-4.5-fp8")]
    [TestCase("glm-5")]
    [TestCase("deepseek-v3.2")]
    public void TrainsAnHfFixtureDirectlyLikeItsConvertedCopy(string fixture)
    {
        string native = Path.Combine(_dir, "native");
        Ok(CliRunner.Run("convert", Fixture(fixture), native, "--to", "native"));
        var direct = CliRunner.Run("train", Fixture(fixture), "--steps", "2", "--seq-len", "16", "--json");
        var viaDisk = CliRunner.Run("train", native, "--steps", "2", "--seq-len", "16", "--json");
        Ok(direct);
        Ok(viaDisk);
        // Same weights in, same batches: the same losses, step for step.
        var a = JsonNode.Parse(direct.Out)!["steps"]!.AsArray().Select(s => s!["total_loss"]!.GetValue<double>()).ToList();
        var b = JsonNode.Parse(viaDisk.Out)!["steps"]!.AsArray().Select(s => s!["total_loss"]!.GetValue<double>()).ToList();
        Assert.That(a, Has.Count.EqualTo(2));
        Assert.That(a, Is.EqualTo(b));
    }

    [TestCase("deepseek-v3")]      // FP8 with F32 scales, tied MTP copies
    [TestCase("qwen3.5-moe-fp8")]  // FP8 with BF16 scales, vision tower carried
    public void SaveAsHfEqualsTrainingTheConvertedCopyAndExportingIt(string fixture)
    {
        string hf = Fixture(fixture), trained = Path.Combine(_dir, "trained"), exported = Path.Combine(_dir, "exported"), direct = Path.Combine(_dir, "direct");
        Ok(CliRunner.Run("train", hf, "--steps", "2", "--seq-len", "16", "--out", trained));
        Ok(CliRunner.Run("convert", trained, exported, "--to", "hf", "--reference", hf));
        Ok(CliRunner.Run("train", hf, "--steps", "2", "--seq-len", "16", "--out", direct, "--save-as", "hf"));

        var want = Tensors(exported);
        var got = Tensors(direct);
        var source = Tensors(hf);
        Assert.That(got.Keys.Order(StringComparer.Ordinal), Is.EqualTo(source.Keys.Order(StringComparer.Ordinal)), "the source's tensors, no more, no fewer");
        foreach (var (name, t) in got)
        {
            Assert.That(t.Header, Is.EqualTo(source[name].Header), name);
            Assert.That(t.Bytes, Is.EqualTo(want[name].Bytes), name);
        }
        Assert.That(got.Count(kv => !kv.Value.Bytes.AsSpan().SequenceEqual(source[kv.Key].Bytes)), Is.GreaterThan(0), "training changed weights");
        Assert.That(Directory.Exists(Path.Combine(direct, "training_state")), Is.False);
        Assert.That(Directory.GetFileSystemEntries(_dir).Select(Path.GetFileName), Has.None.Contains(OutputFolder.PartialSuffix), "the temporary training-layout copy (OUT's scratch folder) is gone");
    }

    [Test]
    public void ATrainedHfSourceExportsWithoutAReference()
    {
        string hf = Fixture("deepseek-v4-flash"), trained = Path.Combine(_dir, "trained"), back = Path.Combine(_dir, "back");
        Ok(CliRunner.Run("train", hf, "--steps", "1", "--seq-len", "16", "--out", trained));
        var report = JsonNode.Parse(File.ReadAllText(Path.Combine(trained, "conversion.json")))!;
        Assert.That(report["family"]!.GetValue<string>(), Is.EqualTo("deepseek-v4"));
        Assert.That(report["source"]!["path"]!.GetValue<string>(), Is.EqualTo(Path.GetFullPath(hf)));
        Assert.That(report["training"]!["train"]!.GetValue<string>(), Is.EqualTo("all"));
        Ok(CliRunner.Run("convert", trained, back, "--to", "hf"));
        var source = Tensors(hf);
        var got = Tensors(back);
        Assert.That(got.ToDictionary(kv => kv.Key, kv => kv.Value.Header), Is.EqualTo(source.ToDictionary(kv => kv.Key, kv => kv.Value.Header)));
    }

    [Test]
    public void SaveAsHfWithoutOutIsAUsageError()
    {
        var (code, _, err) = CliRunner.Run("train", Fixture("deepseek-v3"), "--steps", "1", "--save-as", "hf");
        Assert.That(code, Is.EqualTo(ExitCodes.Usage), err);
        Assert.That(err.Trim().Split('\n'), Has.Length.EqualTo(1));
        Assert.That(err, Does.Contain("--save-as hf").And.Contain("--out"));
    }

    [Test]
    public void AnHfCheckpointWithAMissingTensorIsRefusedNamingIt()
    {
        string hf = Path.Combine(_dir, "hf");
        Directory.CreateDirectory(hf);
        File.Copy(Path.Combine(Fixture("deepseek-v3"), "config.json"), Path.Combine(hf, "config.json"));
        const string dropped = "model.norm.weight";
        using (var c = Checkpoint.Open(Fixture("deepseek-v3")))
        {
            var keep = c.Tensors.Where(t => t.Name != dropped).ToList();
            Assert.That(keep, Has.Count.EqualTo(c.Tensors.Count - 1));
            SafeTensorsWriter.WriteFile(Path.Combine(hf, "model.safetensors"),
                keep.Select(t => (new TensorSpec(t.Name, t.Info.DType, t.Info.Shape), t.File.GetBytes(t.Info).ToArray())));
        }
        var (code, _, err) = CliRunner.Run("train", hf, "--steps", "1");
        Assert.That(code, Is.EqualTo(ExitCodes.Inconsistent), err);
        Assert.That(err.Trim().Split('\n'), Has.Length.EqualTo(1), err);
        Assert.That(err, Does.Contain(dropped).And.Contain(hf));
    }
}
