using Mtp.Adapters.Synthetic;
using Mtp.SafeTensors;

namespace Mtp.Adapters.Tests;

/// <summary>The synthetic layouts come from the families' rule tables: synth writes exactly the HF names the table expects.</summary>
[TestFixture]
public class SynthLayoutTests
{
    static IEnumerable<TestCaseData> Models()
    {
        yield return new TestCaseData(DeepSeekV3Synth.Tiny with { MtpDepth = 2 }).SetName("DeepSeekV3");
        yield return new TestCaseData(DeepSeekV4Synth.Tiny with { MtpDepth = 2 }).SetName("DeepSeekV4");
        yield return new TestCaseData(Qwen35Synth.Tiny with { MtpDepth = 2 }).SetName("Qwen35");
        yield return new TestCaseData(Qwen35Synth.Tiny with { MtpDepth = 2, Fp8 = true }).SetName("Qwen35Fp8");
    }

    [TestCaseSource(nameof(Models))]
    public void WritesExactlyTheNamesTheRuleTableExpects(SynthModel model)
    {
        SynthPlan plan = model.Build();
        var written = plan.Tensors.Select(t => t.Name).ToHashSet(StringComparer.Ordinal);
        Assert.That(written, Has.Count.EqualTo(plan.Tensors.Count), "no name is written twice");

        // the table as the converter builds it from the written checkpoint (its names settle the layout variants)
        RuleTable table = Families.BuildTable(plan.Family, plan.Config, written);
        var expected = new HashSet<string>(StringComparer.Ordinal);
        foreach (Binding b in table.Bindings)
        {
            if (b.Rule.Optional) continue;
            var names = table.HfNames(b).ToList();
            if (b.Rule.Experts is ExpertNames x)
            {
                var fused = new[] { x.FusedGateUp, x.FusedDown }.Where(n => n != null).Select(n => b.Hf + "." + n).ToList();
                names = fused.Count > 0 && written.Contains(fused[0]) ? fused : names.Except(fused).ToList();
            }
            expected.UnionWith(names);
        }
        foreach (SynthTensor t in plan.Tensors)
        {
            if (t.DType == DType.F8_E4M3 || t.Fill == SynthFill.Fp4) expected.Add(table.ScaleNameOf(t.Name));
            if (table.Rules.Any(r => r.Op == RuleOperation.CarryThrough && r.Hf.TryMatch(t.Name, out _))) expected.Add(t.Name);
        }
        Assert.That(written, Is.EquivalentTo(expected));
    }

    [Test]
    public void PicksTheReleasesExpertLayoutsAndTiedCopies()
    {
        var qwen = (Qwen35Synth.Tiny with { MtpDepth = 2 }).Build().Tensors.Select(t => t.Name).ToHashSet();
        Assert.That(qwen, Does.Contain("model.language_model.layers.0.mlp.experts.gate_up_proj"), "BF16: fused main experts");
        Assert.That(qwen, Does.Contain("mtp.layers.1.mlp.experts.0.gate_proj.weight"), "BF16: per-expert MTP experts");
        Assert.That(qwen, Does.Contain("model.visual.patch_embed.proj.weight"), "the carried vision tensors");
        var fp8 = (Qwen35Synth.Tiny with { Fp8 = true }).Build().Tensors.Select(t => t.Name).ToHashSet();
        Assert.That(fp8, Does.Contain("model.language_model.layers.0.mlp.experts.3.down_proj.weight_scale_inv"), "FP8: per-expert everywhere");
        Assert.That(fp8, Does.Not.Contain("model.language_model.layers.0.mlp.experts.gate_up_proj"));

        SynthPlan v3 = (DeepSeekV3Synth.Tiny with { MtpDepth = 2 }).Build();
        SynthTensor copy = v3.Tensors.Single(t => t.Name == "model.layers.4.shared_head.head.weight");
        Assert.That(copy.SameDataAs, Is.EqualTo("lm_head.weight"), "a tied copy repeats its main tensor");
        var v4 = DeepSeekV4Synth.Tiny.Build().Tensors.Select(t => t.Name).ToList();
        Assert.That(v4, Has.Some.StartWith("mtp.0."));
        Assert.That(v4, Has.None.EqualTo("mtp.0.head.weight"), "V4's optional per-depth head copy is not written");
    }

    [Test]
    public void StorageSizesKnownNamesAndRefusesUnknownOnes()
    {
        var layer = new LayerContext(false, 0, 0);
        var o = DeepSeekV3Synth.Tiny.TensorsOf("model.layers.0.self_attn.o_proj.weight", layer);
        Assert.That(o.Select(t => t.Name), Is.EqualTo(new[] { "model.layers.0.self_attn.o_proj.weight", "model.layers.0.self_attn.o_proj.weight_scale_inv" }));
        Assert.That(o.Select(t => t.DType), Is.EqualTo(new[] { DType.F8_E4M3, DType.F32 }));
        var w1 = DeepSeekV4Synth.Tiny.TensorsOf("layers.1.ffn.experts.2.w1.weight", new LayerContext(false, 1, 1));
        Assert.That(w1.Select(t => (t.Name, t.DType)), Is.EqualTo(new[] { ("layers.1.ffn.experts.2.w1.weight", DType.I8), ("layers.1.ffn.experts.2.w1.scale", DType.F8_E8M0) }));

        foreach (string family in SynthModel.Families)
        {
            SynthModel m = SynthModel.For(family);
            var e = Assert.Throws<InvalidOperationException>(() => m.TensorsOf("model.layers.0.mlp.new_module.weight", layer))!;
            Assert.That(e.Message, Does.Contain("model.layers.0.mlp.new_module.weight").And.Contain(family));
        }
    }
}
