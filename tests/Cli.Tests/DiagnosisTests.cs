using System.Text.Json.Nodes;
using Mtp.Tests.Shared;

namespace Mtp.Cli.Tests;

/// <summary>
/// A checkpoint given to the wrong direction, the wrong --family or the wrong --reference is reported as that one
/// mistake, not as the tensors that mistake makes "missing"; real missing-name lists are cut, with the full list in --json.
/// </summary>
public class DiagnosisTests
{
    static string _work = "";
    static string Hf => Path.Combine(RepoPaths.Fixtures, "deepseek-v3");
    static string Native => Path.Combine(_work, "native");
    static string V4Native => Path.Combine(_work, "v4-native");
    static string Out => Path.Combine(_work, "out");

    [OneTimeSetUp]
    public void Convert()
    {
        _work = RepoPaths.NewTempDir("diagnosis");
        foreach (var (from, to) in new[] { (Hf, Native), (Path.Combine(RepoPaths.Fixtures, "deepseek-v4-flash"), V4Native) })
            Assert.That(CliRunner.Run("convert", from, to, "--to", "native", "--json").Code, Is.EqualTo(ExitCodes.Ok));
    }

    [OneTimeTearDown]
    public void Remove()
    {
        if (Directory.Exists(_work)) Directory.Delete(_work, true);
    }

    [TearDown]
    public void RemoveOut()
    {
        if (Directory.Exists(Out)) Directory.Delete(Out, true);
    }

    static string OneLine(string stderr)
    {
        string[] lines = stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.That(lines, Has.Length.EqualTo(1), stderr);
        return lines[0];
    }

    [Test]
    public void TrainingLayoutGivenToNativeSaysToUseToHf()
    {
        var (code, _, err) = CliRunner.Run("convert", Native, Out, "--to", "native");
        string line = OneLine(err);
        Assert.That(code, Is.EqualTo(ExitCodes.Usage), line);
        Assert.That(line, Does.Contain("already in the training layout").And.Contain("--to hf"));
        Assert.That(line, Does.Not.Contain("missing"));
    }

    [Test]
    public void TrainingLayoutWithoutConversionJsonIsRecognizedByItsNames()
    {
        string copy = Path.Combine(_work, "native-bare");
        CopyDir(Native, copy);
        File.Delete(Path.Combine(copy, "conversion.json"));
        try
        {
            var (code, _, err) = CliRunner.Run("convert", copy, Out, "--to", "native");
            string line = OneLine(err);
            Assert.That(code, Is.EqualTo(ExitCodes.Usage), line);
            Assert.That(line, Does.Contain("already in the training layout").And.Contain("mtp.layers.0."));
        }
        finally { Directory.Delete(copy, true); }
    }

    [Test]
    public void HfGivenToHfSaysToUseToNative()
    {
        var (code, _, err) = CliRunner.Run("convert", Hf, Out, "--to", "hf");
        string line = OneLine(err);
        Assert.That(code, Is.EqualTo(ExitCodes.Usage), line);
        Assert.That(line, Does.Contain("a Hugging Face checkpoint").And.Contain("--to native"));
        Assert.That(line, Does.Not.Contain("mtp.layers.0."), "no list of training names it lacks");
    }

    [Test]
    public void ReferenceOfAnotherFamilyBlamesTheReference()
    {
        var (code, stdout, err) = CliRunner.Run("convert", V4Native, Out, "--to", "hf", "--reference", Hf, "--json");
        string line = OneLine(err);
        Assert.That(code, Is.EqualTo(ExitCodes.Inconsistent), line);
        Assert.That(line, Does.StartWith($"mtp: --reference {Hf}: a deepseek-v3 checkpoint").And.Contain("deepseek-v4"));
        Assert.That(line, Does.Not.Contain("missing"));
        Assert.That(JsonNode.Parse(stdout)!["error"]!["file"]!.GetValue<string>(), Is.EqualTo(Path.Combine(Hf, "config.json")));
    }

    [Test]
    public void FamilyContradictingConfigSaysWhatConfigSays()
    {
        var (code, _, err) = CliRunner.Run("convert", Hf, Out, "--to", "native", "--family", "qwen3.5");
        string line = OneLine(err);
        Assert.That(code, Is.EqualTo(ExitCodes.Usage), line);
        Assert.That(line, Does.Contain("--family qwen3.5").And.Contain("model_type 'deepseek_v3'").And.Contain("--family deepseek-v3"));
        Assert.That(line, Does.Not.Contain("model.language_model."), "no list of Qwen names");
    }

    [Test]
    public void MissingNamesAreCutWithTheFullListInJsonAndVerbose()
    {
        // A real missing-tensor case: the training checkpoint lost its MTP depth.
        string cut = Path.Combine(_work, "native-no-mtp");
        var keep = new List<string>();
        using (var ck = Mtp.SafeTensors.Checkpoint.Open(Native))
            keep.AddRange(ck.Tensors.Select(t => t.Name).Where(n => !n.StartsWith("mtp.", StringComparison.Ordinal)));
        var r0 = CliRunner.Run("convert", Native, Out, "--to", "hf");
        Assert.That(r0.Code, Is.EqualTo(ExitCodes.Ok), r0.Err);
        Directory.Delete(Out, true);
        WriteSubset(Native, cut, keep);
        try
        {
            var (code, stdout, err) = CliRunner.Run("convert", cut, Out, "--to", "hf", "--json");
            string line = OneLine(err);
            Assert.That(code, Is.EqualTo(ExitCodes.Inconsistent), line);
            Assert.That(line, Does.Contain("expected tensor(s) missing").And.Contain("more; --verbose lists all"));
            int listed = line[(line.IndexOf("missing: ", StringComparison.Ordinal) + 9)..].Split(" (and ")[0].Split(", ").Length;
            Assert.That(listed, Is.EqualTo(5), line);
            var names = JsonNode.Parse(stdout)!["error"]!["names"]!.AsArray().Select(n => n!.GetValue<string>()).ToList();
            Assert.That(names, Has.Count.GreaterThan(5));
            Assert.That(names, Is.All.StartWith("mtp.layers.0."));
            Assert.That(line, Does.Contain($"{names.Count} expected tensor(s) missing"));

            var verbose = CliRunner.Run("convert", cut, Out, "--to", "hf", "--verbose");
            Assert.That(verbose.Err, Does.Contain(names[^1]), "--verbose lists every name");
        }
        finally { Directory.Delete(cut, true); }
    }

    static void WriteSubset(string from, string to, IReadOnlyCollection<string> names)
    {
        Directory.CreateDirectory(to);
        using var ck = Mtp.SafeTensors.Checkpoint.Open(from);
        var keep = names.ToHashSet(StringComparer.Ordinal);
        var tensors = ck.Tensors.Where(t => keep.Contains(t.Name))
            .Select(t => (new Mtp.SafeTensors.TensorSpec(t.Name, t.Info.DType, t.Info.Shape), t.File.GetBytes(t.Info).ToArray())).ToList();
        Mtp.SafeTensors.SafeTensorsWriter.WriteFile(Path.Combine(to, "model.safetensors"), tensors);
        foreach (string f in new[] { "config.json", "conversion.json" })
            File.Copy(Path.Combine(from, f), Path.Combine(to, f));
    }

    static void CopyDir(string from, string to)
    {
        Directory.CreateDirectory(to);
        foreach (string f in Directory.GetFiles(from)) File.Copy(f, Path.Combine(to, Path.GetFileName(f)));
    }
}
