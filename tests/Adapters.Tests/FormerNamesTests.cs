using Mtp.SafeTensors;
using Mtp.Tests.Shared;

namespace Mtp.Adapters.Tests;

/// <summary>A DeepSeek-V4 training checkpoint written with the earlier names still exports to the release's bytes.</summary>
[TestFixture]
public class FormerNamesTests
{
    [TestCase("deepseek-v4-flash", 50)]
    [TestCase("deepseek-v4-legacy-mtp", 20)] // one main layer and one depth
    public void OldNamedTrainingCheckpointExportsByteIdentical(string fixture, int minRenamed)
    {
        string fx = Fx.Dir(fixture);
        string tmp = RepoPaths.NewTempDir("former-" + fixture);
        string nat = Path.Combine(tmp, "native"), back = Path.Combine(tmp, "hf");
        Converter.ToNative(fx, nat, new ConvertOptions());
        var (old, renamed) = FormerV4Names.Write(nat, "former-old-" + fixture);
        Assert.That(renamed, Is.GreaterThanOrEqualTo(minRenamed), "most names differ between the two versions");
        using (var c = Checkpoint.Open(old))
            Assert.That(c.Tensors.Select(t => t.Name), Does.Contain("model.layers.0.attn.wq_a.weight").And.Contain("model.hc_head.fn"));

        var r = Converter.ToHf(old, back, new ConvertOptions { Reference = fx });
        var v = Verifier.Compare(fx, back);
        Assert.That(v.Identical, Is.True, () => v.ToJson().ToJsonString());
        Assert.That(r.Requantized, Is.Empty);
    }

    [Test]
    public void TheTableMapsEveryOldNameToACurrentOneAndLeavesOthers()
    {
        var t = DeepSeekV4FormerNames.Table;
        Assert.That(t.Current("model.layers.12.attn.indexer.weights_proj.weight"), Is.EqualTo("model.layers.12.self_attn.compressor.indexer.scorer.weights_proj.weight"));
        Assert.That(t.Current("mtp.layers.0.hc_head.fn"), Is.EqualTo("mtp.layers.0.hc_head.hc_fn"));
        Assert.That(t.Current("model.hc_head.scale"), Is.EqualTo("model.hc_head.hc_scale"));
        // Current names, HF names and names under a non-numeric layer are not former names.
        Assert.That(new[] { "model.layers.1.self_attn.sinks", "layers.1.attn_norm.weight", "model.layers.x.attn_norm.weight", "model.layers.1.mlp.gate.weight" }
            .Select(t.Current), Has.All.Null);
        // No current name is also an old one, and no two old names share a current one (reading is unambiguous).
        var values = t.BlockSubNames.Values.ToList();
        Assert.That(values, Is.Unique);
        Assert.That(values.Intersect(t.BlockSubNames.Keys), Is.Empty);
    }
}
