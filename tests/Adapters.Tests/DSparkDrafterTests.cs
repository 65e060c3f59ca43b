using System.Text.Json.Nodes;
using Mtp.SafeTensors;
using Mtp.Tests.Shared;

namespace Mtp.Adapters.Tests;

/// <summary>
/// A DeepSeek-V4 checkpoint carrying a DSpark drafter under <c>mtp.*</c> is refused in one line naming the file and a
/// drafter tensor, and nothing is written; no drafter block is ever read as an MTP depth. The checkpoints are the V4
/// fixture with drafter-shaped tensors added (DeepSpec's part names), since no released DSpark layout is stored here.
/// </summary>
[TestFixture]
public class DSparkDrafterTests
{
    /// <summary>The V4 fixture in one file plus <paramref name="extra"/> BF16 [4, 4] tensors, written after its own.</summary>
    static string WithTensors(string tag, params string[] extra)
    {
        string dir = RepoPaths.NewTempDir(tag);
        using (var c = Checkpoint.Open(Fx.Dir("deepseek-v4-flash")))
        {
            var list = c.Tensors.Select(t => (new TensorSpec(t.Name, t.Info.DType, t.Info.Shape), t.File.GetBytes(t.Info).ToArray())).ToList();
            list.AddRange(extra.Select(n => (new TensorSpec(n, DType.BF16, new long[] { 4, 4 }), new byte[32])));
            SafeTensorsWriter.WriteFile(Path.Combine(dir, "model.safetensors"), list);
        }
        File.Copy(Path.Combine(Fx.Dir("deepseek-v4-flash"), "config.json"), Path.Combine(dir, "config.json"));
        return dir;
    }

    static AdapterException Refused(string dir)
    {
        string outDir = Path.Combine(RepoPaths.NewTempDir("dspark-out"), "out");
        var e = Assert.Throws<AdapterException>(() => Converter.ToNative(dir, outDir, new ConvertOptions { AllowUnknown = true }))!;
        Assert.That(Directory.Exists(outDir), Is.False, "nothing written");
        Assert.That(e.Message, Does.Not.Contain("\n"));
        Assert.That(e.Message, Does.Contain("DSpark"));
        Assert.That(e.Kind, Is.EqualTo(AdapterErrorKind.Inconsistent));
        return e;
    }

    [TestCase("mtp.fc.weight")]
    [TestCase("mtp.hidden_norm.weight")]
    [TestCase("mtp.layers.0.self_attn.q_proj.weight")]
    [TestCase("mtp.markov_head.proj.weight")]
    [TestCase("mtp.confidence_head.fc1.weight")]
    public void ADrafterPartIsRefusedNamingFileAndTensorEvenWithAllowUnknown(string part)
    {
        string dir = WithTensors("dspark-part", part);
        var e = Refused(dir);
        Assert.That(e.Message, Does.Contain(Path.Combine(dir, "model.safetensors")));
        Assert.That(e.Message, Does.Contain($"'{part}'"));
    }

    [Test]
    public void ADrafterBlockNumberedLikeAnMtpDepthPastTheConfigsDepthIsRefused()
    {
        // config: num_nextn_predict_layers 1, so mtp.0 is the MTP depth and mtp.1 / mtp.2 cannot be.
        string dir = WithTensors("dspark-blocks", "mtp.1.attn.wq_a.weight", "mtp.2.attn.wq_a.weight");
        var e = Refused(dir);
        Assert.That(e.Message, Does.Contain("'mtp.1.attn.wq_a.weight'").And.Contain("block 1").And.Contain("num_nextn_predict_layers is 1"));
    }

    [TestCase("markov_rank")]
    [TestCase("dspark_config")]
    public void ADrafterConfigIsRefusedNamingConfigJson(string key)
    {
        string dir = WithTensors("dspark-config");
        JsonObject cfg = Fx.Config(dir);
        cfg[key] = 32;
        File.WriteAllText(Path.Combine(dir, "config.json"), cfg.ToJsonString());
        var e = Refused(dir);
        Assert.That(e.Message, Does.Contain(Path.Combine(dir, "config.json")).And.Contain($"'{key}'"));
    }

    [Test]
    public void ThePlainV4FixtureItsTrainingLayoutAndOtherFamiliesAreNotDrafters()
    {
        foreach (string fx in new[] { "deepseek-v4-flash", "deepseek-v4-legacy-mtp", "qwen3.5-moe" })
        {
            using var c = Checkpoint.Open(Fx.Dir(fx));
            Assert.That(DSparkDrafter.Find(c.Config!, c.Tensors.Select(t => t.Name)), Is.Null, fx);
        }
        // Qwen stores its MTP under mtp.layers / mtp.fc: the refusal is DeepSeek-V4's only, so Qwen still converts.
        using var q = Checkpoint.Open(Fx.Dir("qwen3.5-moe"));
        Assert.DoesNotThrow(() => DSparkDrafter.Refuse(Families.Qwen35, q, q.Config!));
        // V4's training layout keeps its MTP depths under mtp.layers.{k} (self_attn.*, as a drafter's layers would be
        // named): with the main model under model.* it is not a drafter.
        string nat = Path.Combine(RepoPaths.NewTempDir("dspark-nat"), "n");
        Converter.ToNative(Fx.Dir("deepseek-v4-flash"), nat, new ConvertOptions());
        using var n = Checkpoint.Open(nat);
        Assert.That(n.Tensors.Select(t => t.Name), Has.Some.StartsWith("mtp.layers.0.self_attn."));
        Assert.That(DSparkDrafter.Find(n.Config!, n.Tensors.Select(t => t.Name)), Is.Null);
    }
}
