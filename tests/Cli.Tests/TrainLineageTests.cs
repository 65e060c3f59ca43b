using Mtp.SafeTensors;
using Mtp.Tests.Shared;

namespace Mtp.Cli.Tests;

/// <summary>
/// What a trained checkpoint keeps of its source: <c>train --out</c> carries the auxiliary files and the HF source recorded
/// in conversion.json, so <c>convert TRAINED X --to hf</c> without a reference returns to the source's format; without
/// that record export asks for one instead of guessing.
/// </summary>
public class TrainLineageTests
{
    string _dir = "";

    [SetUp] public void SetUp() => _dir = RepoPaths.NewTempDir("cli-lineage");
    [TearDown] public void TearDown() => Directory.Delete(_dir, true);

    /// <summary>A fixture (default DeepSeek-V3: FP8, F32 scales) plus the auxiliary files of a real download, one in a sub-folder.</summary>
    string HfWithAuxiliaryFiles(string fixture = "deepseek-v3")
    {
        string hf = Path.Combine(_dir, "hf");
        string fx = Path.Combine(RepoPaths.Fixtures, fixture);
        Directory.CreateDirectory(hf);
        foreach (string f in Directory.GetFiles(fx)) File.Copy(f, Path.Combine(hf, Path.GetFileName(f)));
        File.WriteAllText(Path.Combine(hf, "tokenizer.json"), "{\"model\": {}}");
        File.WriteAllText(Path.Combine(hf, "generation_config.json"), "{\"temperature\": 0.6}");
        File.WriteAllText(Path.Combine(hf, "README.md"), "# model card");
        Directory.CreateDirectory(Path.Combine(hf, "inference", "configs"));
        File.WriteAllText(Path.Combine(hf, "inference", "model.py"), "print('model')");
        File.WriteAllText(Path.Combine(hf, "inference", "configs", "config_tiny.json"), "{}");
        return hf;
    }

    static readonly string[] AuxiliaryFiles = { "tokenizer.json", "generation_config.json", "README.md", "inference/model.py", "inference/configs/config_tiny.json" };

    static void Ok((int Code, string Out, string Err) r) => Assert.That(r.Code, Is.EqualTo(0), r.Err);

    static void AssertSameTensors(string expectedDir, string actualDir)
    {
        using var e = Checkpoint.Open(expectedDir);
        using var a = Checkpoint.Open(actualDir);
        var want = e.Tensors.Select(t => $"{t.Name} {t.Info.DType} {t.Info.ShapeText}").OrderBy(x => x, StringComparer.Ordinal).ToList();
        var got = a.Tensors.Select(t => $"{t.Name} {t.Info.DType} {t.Info.ShapeText}").OrderBy(x => x, StringComparer.Ordinal).ToList();
        Assert.That(got, Is.EqualTo(want), $"{actualDir}: {got.Count} tensors vs the source's {want.Count}");
    }

    [TestCase("deepseek-v3")]        // FP8 blocks, F32 scales, tied MTP copies
    [TestCase("deepseek-v4-flash")]  // FP8 + packed FP4 experts, E8M0 scales
    [TestCase("qwen3.5-moe-fp8")]    // FP8 blocks, BF16 scales, vision tower carried
    public void TrainedCheckpointExportsWithoutReferenceToTheSourceFormatWithItsAuxiliaryFiles(string fixture)
    {
        string hf = HfWithAuxiliaryFiles(fixture), nat = Path.Combine(_dir, "native"), trained = Path.Combine(_dir, "trained"), back = Path.Combine(_dir, "back");
        Ok(CliRunner.Run("convert", hf, nat, "--to", "native"));
        Ok(CliRunner.Run("train", nat, "--steps", "1", "--seq-len", "16", "--out", trained));
        Ok(CliRunner.Run("convert", trained, back, "--to", "hf"));

        // Every tensor of the source (quantized weights with their scale grids, the tied MTP copies) in its dtype and shape.
        AssertSameTensors(hf, back);
        foreach (string dir in new[] { nat, trained, back })
            foreach (string f in AuxiliaryFiles)
                Assert.That(File.Exists(Path.Combine(dir, f)), Is.True, $"{dir} lacks {f}");
        Assert.That(Directory.Exists(Path.Combine(back, "training_state")), Is.False, "the optimizer state is not part of an exported model");
        Assert.That(File.ReadAllText(Path.Combine(back, "config.json")), Does.Contain("quantization_config"), "the source's quantization_config restored");
    }

    [Test]
    public void TrainingATrainedCheckpointKeepsTheLineage()
    {
        string nat = Path.Combine(_dir, "native"), t1 = Path.Combine(_dir, "t1"), t2 = Path.Combine(_dir, "t2"), back = Path.Combine(_dir, "back");
        string hf = Path.Combine(RepoPaths.Fixtures, "deepseek-v3");
        Ok(CliRunner.Run("convert", hf, nat, "--to", "native"));
        Ok(CliRunner.Run("train", nat, "--steps", "1", "--total-steps", "2", "--out", t1));
        Ok(CliRunner.Run("train", t1, "--resume", t1, "--steps", "1", "--out", t2));
        Ok(CliRunner.Run("convert", t2, back, "--to", "hf"));
        AssertSameTensors(hf, back);
    }

    [Test]
    public void ExportWithoutLineageIsRefusedUnlessADTypeIsGiven()
    {
        string nat = Path.Combine(_dir, "native"), back = Path.Combine(_dir, "back");
        Ok(CliRunner.Run("convert", Path.Combine(RepoPaths.Fixtures, "deepseek-v3"), nat, "--to", "native"));
        File.Delete(Path.Combine(nat, "conversion.json")); // a training-layout checkpoint made by another tool

        var r = CliRunner.Run("convert", nat, back, "--to", "hf");
        Assert.That(r.Code, Is.EqualTo(ExitCodes.Usage), r.Err);
        Assert.That(r.Err.Trim().Split('\n'), Has.Length.EqualTo(1), r.Err);
        Assert.That(r.Err, Does.Contain(nat).And.Contain("--reference").And.Contain("--dtype"));
        Assert.That(Directory.Exists(back), Is.False);

        Ok(CliRunner.Run("convert", nat, back, "--to", "hf", "--dtype", "bf16"));
        using var c = Checkpoint.Open(back);
        Assert.That(c.Tensors.Select(t => t.Info.DType).Distinct(), Is.SubsetOf(new[] { DType.BF16, DType.F32 }), "asked for unquantized");
    }

    [Test]
    public void AMalformedSourceRecordFailsBeforeTraining()
    {
        string nat = Path.Combine(_dir, "native"), trained = Path.Combine(_dir, "trained");
        Ok(CliRunner.Run("convert", Path.Combine(RepoPaths.Fixtures, "deepseek-v3"), nat, "--to", "native"));
        File.WriteAllText(Path.Combine(nat, "conversion.json"), "{\"family\": ");
        var r = CliRunner.Run("train", nat, "--steps", "1", "--out", trained);
        Assert.That(r.Code, Is.EqualTo(ExitCodes.Malformed), r.Err);
        Assert.That(r.Err, Does.Contain("conversion.json"));
        Assert.That(r.Out, Does.Not.Contain("step 1/"), "refused before the first step, not at the save");
        Assert.That(Directory.Exists(trained), Is.False);
    }

    [Test]
    public void ConvertCopiesSubFoldersButNeitherWeightsNorHiddenFolders()
    {
        string hf = HfWithAuxiliaryFiles(), nat = Path.Combine(_dir, "native");
        Directory.CreateDirectory(Path.Combine(hf, "original"));
        File.WriteAllText(Path.Combine(hf, "original", "params.json"), "{}");
        File.Copy(Path.Combine(RepoPaths.Fixtures, "deepseek-v3", "model-00001-of-00002.safetensors"), Path.Combine(hf, "original", "weights.safetensors"));
        Directory.CreateDirectory(Path.Combine(hf, ".cache", "huggingface"));
        File.WriteAllText(Path.Combine(hf, ".cache", "huggingface", "lock"), "");
        Ok(CliRunner.Run("convert", hf, nat, "--to", "native"));
        Assert.That(File.Exists(Path.Combine(nat, "original", "params.json")), Is.True);
        Assert.That(File.Exists(Path.Combine(nat, "inference", "configs", "config_tiny.json")), Is.True);
        Assert.That(File.Exists(Path.Combine(nat, "original", "weights.safetensors")), Is.False, "weights are converted, never copied");
        Assert.That(Directory.Exists(Path.Combine(nat, ".cache")), Is.False);
    }

    [Test]
    public void AnOutputInsideItsInputIsNotCopiedIntoItself()
    {
        string hf = HfWithAuxiliaryFiles(), nat = Path.Combine(hf, "native");
        Ok(CliRunner.Run("convert", hf, nat, "--to", "native"));
        Assert.That(File.Exists(Path.Combine(nat, "inference", "model.py")), Is.True);
        Assert.That(Directory.Exists(Path.Combine(nat, "native")), Is.False);
        // Again with --force: the previous output inside the input is replaced, not carried as a sub-folder.
        Ok(CliRunner.Run("convert", hf, nat, "--to", "native", "--force"));
        Assert.That(Directory.Exists(Path.Combine(nat, "native")), Is.False);
    }
}
