using System.Text.Json.Nodes;

namespace Mtp.Adapters.Tests;

[TestFixture]
public class RuleTableTests
{
    [TestCaseSource(typeof(RoundTripTests), nameof(RoundTripTests.AllFixtures))]
    public void EveryNameMapsBothWaysThroughTheSameTable(string fixture)
    {
        string fx = Fx.Dir(fixture);
        using var c = Mtp.SafeTensors.Checkpoint.Open(fx);
        var names = c.Tensors.Select(t => t.Name).ToList();
        string family = FamilyDetector.Detect(c.Config!)!;
        var table = Families.BuildTable(family, c.Config!, names);
        Assert.That(table.Bindings, Is.Not.Empty);
        foreach (Binding b in table.Bindings.Where(b => b.Rule.Op == RuleOperation.Rename || b.Rule.Op == RuleOperation.DropIfTied))
        {
            Assert.That(table.ToNativeName(b.Hf), Is.EqualTo(b.Native), b.Hf);
            Assert.That(table.ToHfName(b.Native), Is.EqualTo(b.Hf), b.Native);
        }
        // Every non-expert, non-scale source name is claimed by a rule and comes back unchanged.
        foreach (string n in names.Where(n => !n.Contains(".experts.") && !n.EndsWith("_scale_inv") && !n.EndsWith(".weight_scale") && !(n.EndsWith(".scale") && !n.Contains("hc_"))))
        {
            string? nat = table.ToNativeName(n);
            Assert.That(nat, Is.Not.Null, n);
            Assert.That(table.ToHfName(nat!), Is.EqualTo(n));
        }
    }

    [Test]
    public void DetectsFamiliesFromConfig()
    {
        Assert.That(FamilyDetector.Detect(new JsonObject { ["model_type"] = "deepseek_v3" }), Is.EqualTo(Families.DeepSeekV3));
        Assert.That(FamilyDetector.Detect(new JsonObject { ["model_type"] = "deepseek_v4" }), Is.EqualTo(Families.DeepSeekV4));
        Assert.That(FamilyDetector.Detect(new JsonObject { ["model_type"] = "qwen3_5_moe" }), Is.EqualTo(Families.Qwen35));
        Assert.That(FamilyDetector.Detect(new JsonObject { ["model_type"] = "x", ["text_config"] = new JsonObject { ["model_type"] = "qwen3_5_text" } }), Is.EqualTo(Families.Qwen35));
        Assert.That(FamilyDetector.Detect(new JsonObject { ["model_type"] = "qwen3_next" }), Is.EqualTo(Families.Qwen3Next));
        Assert.That(FamilyDetector.Detect(new JsonObject { ["model_type"] = "llama" }), Is.Null);
    }

    [Test]
    public void FactsComeFromConfig()
    {
        var f = Families.ReadFacts(Families.DeepSeekV3, Fx.Config(Fx.Dir("deepseek-v3")));
        Assert.That((f.NumHiddenLayers, f.MtpDepth, f.NumExperts), Is.EqualTo((3, 1, 4)));
        Assert.That(f.IsMoe(0), Is.False);
        Assert.That(f.IsMoe(3), Is.True);
        var q = Families.ReadFacts(Families.Qwen3Next, new JsonObject { ["num_hidden_layers"] = 2, ["num_experts"] = 4 }, new[] { "mtp.layers.0.x", "mtp.layers.1.y" });
        Assert.That(q.MtpDepth, Is.EqualTo(2));
        Assert.That(q.MtpFusionShared, Is.True);
    }

    [Test]
    public void CollisionsAreRejectedWhenTheTableIsBuilt()
    {
        var facts = Families.ReadFacts(Families.DeepSeekV3, new JsonObject { ["num_hidden_layers"] = 2 });
        var rules = new[]
        {
            new Rule("model.layers.{i}.a.weight", "model.layers.{i}.x.weight", domain: LayerDomain.Main),
            new Rule("model.layers.{i}.b.weight", "model.layers.{i}.x.weight", domain: LayerDomain.Main),
        };
        var e = Assert.Throws<AdapterException>(() => new RuleTable("test", facts, rules, new QuantScheme(ScaleNaming.ScaleInv, Mtp.SafeTensors.DType.F32)))!;
        Assert.That(e.Message, Does.Contain("model.layers.0.x.weight"));
        var same = new[] { new Rule("a.weight", "x.weight"), new Rule("a.weight", "y.weight") };
        Assert.Throws<AdapterException>(() => new RuleTable("test", facts, same, new QuantScheme(ScaleNaming.ScaleInv, Mtp.SafeTensors.DType.F32)));
    }

    [Test]
    public void PatternsCaptureAndFormatOffsets()
    {
        var p = new NamePattern("model.layers.{k+61}.mlp.experts.{e}.gate_proj.weight");
        Assert.That(p.TryMatch("model.layers.62.mlp.experts.7.gate_proj.weight", out var v), Is.True);
        Assert.That((v.K, v.E), Is.EqualTo((1, 7)));
        Assert.That(p.Format(v), Is.EqualTo("model.layers.62.mlp.experts.7.gate_proj.weight"));
        Assert.That(p.TryMatch("model.layers.60.mlp.experts.7.gate_proj.weight", out _), Is.False);
        Assert.That(p.TryMatch("model.layers.062.mlp.experts.7.gate_proj.weight", out _), Is.False);
        var w = new NamePattern("model.visual.{*}");
        Assert.That(w.TryMatch("model.visual.blocks.0.attn.qkv.weight", out var wv) && w.Format(wv) == "model.visual.blocks.0.attn.qkv.weight", Is.True);
    }
}
