using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using Mtp.SafeTensors;
using Mtp.Tests.Shared;

namespace Mtp.Cli.Tests;

/// <summary>
/// <c>mtp train --train mtp</c> end to end: an HF fixture converted, MTP-only trained and exported with the fixture as
/// reference comes back with every main tensor byte for byte as released and only MTP tensors changed; the mode is
/// reported, saved, and held on <c>--resume</c>.
/// </summary>
public class MtpOnlyTrainCliTests
{
    string _dir = "";

    [SetUp] public void SetUp() => _dir = RepoPaths.NewTempDir("cli-mtp-only");
    [TearDown] public void TearDown() => Directory.Delete(_dir, true);

    static void Ok((int Code, string Out, string Err) r) => Assert.That(r.Code, Is.EqualTo(0), r.Err);

    static bool IsScale(string name) => name.EndsWith("_scale_inv", StringComparison.Ordinal) || name.EndsWith(".scale", StringComparison.Ordinal);

    /// <summary>Whether an HF tensor name belongs to an MTP depth, in the family's own HF naming.</summary>
    static Func<string, bool> HfMtpName(string fixture)
    {
        var cfg = JsonNode.Parse(File.ReadAllText(Path.Combine(RepoPaths.Fixtures, fixture, "config.json")))!.AsObject();
        if (!fixture.StartsWith("deepseek-v3", StringComparison.Ordinal) && !fixture.StartsWith("glm", StringComparison.Ordinal)) return n => n.StartsWith("mtp.", StringComparison.Ordinal); // V4, Qwen3.5
        int layers = cfg["num_hidden_layers"]!.GetValue<int>();
        var re = new Regex(@"^model\.layers\.(\d+)\.");
        return n => re.Match(n) is { Success: true } m && int.Parse(m.Groups[1].Value) >= layers; // DeepSeek-V3, GLM-4.5: model.layers.{N+k}
    }

    [TestCase("deepseek-v3")]        // FP8 blocks, F32 scales, tied embedding/head copies in the MTP layer
    [TestCase("qwen3.5-moe-fp8")]    // FP8 blocks, BF16 scales, vision tower carried
    [TestCase("deepseek-v4-flash")]  // FP8 + packed FP4 experts, E8M0 scales
    [TestCase("glm-4.5")]            // BF16, MTP at model.layers.{N}, attention biases
    [TestCase("deepseek-v3.2")]      // FP8 with power-of-two F32 scales, indexer in every layer
    public void ExportedWithTheFixtureAsReferenceEveryMainTensorIsTheReleasedBytes(string fixture)
    {
        string hf = Path.Combine(RepoPaths.Fixtures, fixture), nat = Path.Combine(_dir, "native"), trained = Path.Combine(_dir, "trained"), back = Path.Combine(_dir, "back");
        Ok(CliRunner.Run("convert", hf, nat, "--to", "native"));
        var t = CliRunner.Run("train", nat, "--train", "mtp", "--steps", "3", "--seq-len", "16", "--lr", "0.01", "--out", trained, "--json");
        Ok(t);
        var doc = JsonNode.Parse(t.Out)!;
        Assert.That(doc["summary"]!["train"]!.GetValue<string>(), Is.EqualTo("mtp"));
        Assert.That(doc["steps"]!.AsArray().Select(s => s!["loss"]!.GetValue<double>()), Has.All.GreaterThan(0.0), "the main loss is still reported");
        Ok(CliRunner.Run("convert", trained, back, "--to", "hf", "--reference", hf));

        var isMtp = HfMtpName(fixture);
        using var a = Checkpoint.Open(hf);
        using var b = Checkpoint.Open(back);
        Assert.That(b.Tensors.Select(x => x.Name), Is.EquivalentTo(a.Tensors.Select(x => x.Name)));
        var differentMain = new List<string>();
        int main = 0, mtp = 0, mtpChanged = 0;
        foreach (var x in a.Tensors)
        {
            var y = b.Get(x.Name);
            bool same = x.Info.DType == y.Info.DType && x.Info.Shape.SequenceEqual(y.Info.Shape) && x.File.GetBytes(x.Info).SequenceEqual(y.File.GetBytes(y.Info));
            // DeepSeek-V3.2's indexer only selects keys and gets no gradient: it stays as released.
            if (isMtp(x.Name) && x.Name.Contains(".self_attn.indexer.", StringComparison.Ordinal)) { if (!same) differentMain.Add(x.Name + " (indexer)"); }
            // Scales are not counted: the export keeps the reference's scale wherever the trained block still fits it.
            else if (isMtp(x.Name)) { if (IsScale(x.Name)) continue; mtp++; if (!same) mtpChanged++; }
            else { main++; if (!same) differentMain.Add($"{x.Name} ({x.Info.DType} {x.Info.ShapeText} -> {y.Info.DType} {y.Info.ShapeText})"); }
        }
        TestContext.Out.WriteLine($"{fixture}: {main} main tensors byte-identical to the release, {mtpChanged} of {mtp} MTP tensors changed");
        Assert.That(differentMain, Is.Empty, "main (and indexer) tensors that differ from the release");
        Assert.That(main, Is.GreaterThan(50));
        Assert.That(mtpChanged, Is.GreaterThan(mtp / 2), "most MTP tensors were trained");
    }

    [Test]
    public void TheInfoLineAndSummaryCountTrainedAndFrozenParameters()
    {
        string nat = Path.Combine(_dir, "native");
        Ok(CliRunner.Run("convert", Path.Combine(RepoPaths.Fixtures, "deepseek-v3"), nat, "--to", "native"));
        var all = CliRunner.Run("train", nat, "--steps", "1", "--seq-len", "16", "--json");
        var mtp = CliRunner.Run("train", nat, "--steps", "1", "--seq-len", "16", "--json", "--train", "mtp");
        Ok(all);
        Ok(mtp);
        JsonNode Summary((int, string Out, string) r) => JsonNode.Parse(r.Out)!["summary"]!;
        long Get(JsonNode s, string k) => s[k]!.GetValue<long>();
        var sa = Summary(all);
        var sm = Summary(mtp);
        Assert.That(sa["train"]!.GetValue<string>(), Is.EqualTo("all"));
        Assert.That(Get(sa, "frozen_parameters"), Is.EqualTo(0));
        long total = Get(sa, "trained_parameters");
        Assert.That(Get(sm, "trained_parameters") + Get(sm, "frozen_parameters"), Is.EqualTo(total));
        Assert.That(Get(sm, "trained_parameters"), Is.GreaterThan(0).And.LessThan(total / 2));
        var text = CliRunner.Run("train", nat, "--steps", "1", "--seq-len", "16", "--train", "mtp"); // the info line (--json keeps stderr quiet)
        Ok(text);
        Assert.That(text.Err, Does.Contain($"{Get(sm, "trained_parameters"):N0} parameters trained, {Get(sm, "frozen_parameters"):N0} frozen (--train mtp)"));
    }

    [Test]
    public void AResumeWithAnotherTrainModeIsRefusedAndTheSameOneAccepted()
    {
        string nat = Path.Combine(_dir, "native"), mtpRun = Path.Combine(_dir, "mtp"), allRun = Path.Combine(_dir, "all");
        Ok(CliRunner.Run("convert", Path.Combine(RepoPaths.Fixtures, "deepseek-v3"), nat, "--to", "native"));
        Ok(CliRunner.Run("train", nat, "--train", "mtp", "--steps", "1", "--total-steps", "3", "--seq-len", "16", "--out", mtpRun));
        Ok(CliRunner.Run("train", nat, "--steps", "1", "--total-steps", "2", "--seq-len", "16", "--out", allRun));

        var r = CliRunner.Run("train", mtpRun, "--resume", mtpRun, "--steps", "1", "--train", "all");
        Assert.That(r.Code, Is.EqualTo(ExitCodes.Usage), r.Err);
        Assert.That(r.Err.Trim().Split('\n'), Has.Length.EqualTo(1), r.Err);
        Assert.That(r.Err, Does.Contain("--train all differs from the saved run's mtp"));
        r = CliRunner.Run("train", allRun, "--resume", allRun, "--steps", "1", "--train", "mtp");
        Assert.That(r.Code, Is.EqualTo(ExitCodes.Usage), r.Err);
        Assert.That(r.Err, Does.Contain("--train mtp differs from the saved run's all"));

        var same = CliRunner.Run("train", mtpRun, "--resume", mtpRun, "--steps", "1", "--train", "mtp", "--json");
        Ok(same);
        Assert.That(JsonNode.Parse(same.Out)!["summary"]!["train"]!.GetValue<string>(), Is.EqualTo("mtp"));
        var implied = CliRunner.Run("train", mtpRun, "--resume", mtpRun, "--steps", "1", "--json");
        Ok(implied);
        Assert.That(JsonNode.Parse(implied.Out)!["summary"]!["train"]!.GetValue<string>(), Is.EqualTo("mtp"), "left out, the saved mode applies");
    }

    [TestCase("--train", "main", "--train must be")]
    [TestCase("--mtp-loss-scale", "0", "--mtp-loss-scale 0")]
    public void AnMtpOnlyRunThatCannotTrainIsAUsageError(string flag, string value, string expected)
    {
        string nat = Path.Combine(_dir, "native");
        Ok(CliRunner.Run("convert", Path.Combine(RepoPaths.Fixtures, "deepseek-v3"), nat, "--to", "native"));
        var args = new List<string> { "train", nat, "--steps", "1", flag, value };
        if (flag != "--train") args.AddRange(new[] { "--train", "mtp" });
        var r = CliRunner.Run(args.ToArray());
        Assert.That(r.Code, Is.EqualTo(ExitCodes.Usage), r.Err);
        Assert.That(r.Err, Does.Contain(expected));
    }
}
