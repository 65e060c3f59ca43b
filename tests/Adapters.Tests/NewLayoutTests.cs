using Mtp.SafeTensors;
using Mtp.Tests.Shared;

namespace Mtp.Adapters.Tests;

/// <summary>
/// What the DeepSeek-V3.2, GLM-4.5 and Qwen3.6 fixtures add beyond a byte-identical round trip (RoundTripTests covers
/// that for every fixture): where their tensors land in the training layout, and that each source layout variant is
/// written back as it came.
/// </summary>
[TestFixture]
public class NewLayoutTests
{
    static HashSet<string> NativeNames(string fixture, out string tmp)
    {
        tmp = RepoPaths.NewTempDir("new-" + fixture);
        string nat = Path.Combine(tmp, "native");
        Converter.ToNative(Fx.Dir(fixture), nat, new ConvertOptions());
        using var c = Checkpoint.Open(nat);
        return c.Tensors.Select(t => t.Name).ToHashSet(StringComparer.Ordinal);
    }

    [Test]
    public void Qwen36FusedMtpExpertsGoBackFusedAndQwen35PerExpertOnesPerExpert()
    {
        foreach (var (fixture, fused) in new[] { ("qwen3.6-moe", true), ("qwen3.5-moe", false) })
        {
            NativeNames(fixture, out string tmp);
            string back = Path.Combine(tmp, "hf");
            // No reference: the layout must come from what the training checkpoint recorded of its source, not the model_type
            // (both fixtures say qwen3_5_moe).
            Converter.ToHf(Path.Combine(tmp, "native"), back, new ConvertOptions());
            using (var c = Checkpoint.Open(back))
            {
                var names = c.Tensors.Select(t => t.Name).ToHashSet(StringComparer.Ordinal);
                Assert.That(names.Contains("mtp.layers.0.mlp.experts.gate_up_proj"), Is.EqualTo(fused), fixture);
                Assert.That(names.Contains("mtp.layers.0.mlp.experts.0.gate_proj.weight"), Is.EqualTo(!fused), fixture);
            }
            Assert.That(Verifier.Compare(Fx.Dir(fixture), back).Identical, Is.True, fixture + ": BF16 goes back byte for byte");
            Directory.Delete(tmp, true);
        }
    }

    [Test]
    public void Glm45MtpLayerMovesToMtpLayersWithItsAttentionBiasesAndNorms()
    {
        var names = NativeNames("glm-4.5", out string tmp);
        foreach (string n in new[]
        {
            "mtp.layers.0.eh_proj.weight", "mtp.layers.0.enorm.weight", "mtp.layers.0.hnorm.weight", "mtp.layers.0.final_layernorm.weight",
            "mtp.layers.0.self_attn.q_proj.bias", "mtp.layers.0.self_attn.k_norm.weight", "mtp.layers.0.mlp.experts.gate_up_proj",
            "mtp.layers.0.mlp.shared_experts.down_proj.weight", "model.layers.0.mlp.gate_proj.weight", "model.layers.1.mlp.experts.down_proj",
        })
            Assert.That(names, Does.Contain(n));
        Assert.That(names.Where(n => n.StartsWith("model.layers.3.", StringComparison.Ordinal)), Is.Empty, "no MTP tensor left at decoder layer L");
        // The copies of the embedding and head are byte-identical in the fixture, so they are dropped (and re-created on export).
        Assert.That(names, Does.Not.Contain("mtp.layers.0.embed_tokens.weight"));
        Directory.Delete(tmp, true);
    }

    [Test]
    public void DeepSeekV32IndexerIsDequantizedInEveryLayerAndScaleFmtIsKept()
    {
        var names = NativeNames("deepseek-v3.2", out string tmp);
        foreach (string layer in new[] { "model.layers.0.", "model.layers.2.", "mtp.layers.0." })
            foreach (string t in new[] { "wq_b.weight", "wk.weight", "k_norm.weight", "k_norm.bias", "weights_proj.weight" })
                Assert.That(names, Does.Contain(layer + "self_attn.indexer." + t));
        Assert.That(names.Where(n => n.EndsWith("_scale_inv", StringComparison.Ordinal)), Is.Empty, "dequantized: no scales in the training layout");
        using (var c = Checkpoint.Open(Path.Combine(tmp, "native")))
            Assert.That(c.Tensors.Single(t => t.Name == "model.layers.1.self_attn.indexer.k_norm.bias").Info.DType, Is.EqualTo(DType.F32), "F32 kept");
        // Without a reference the export re-quantizes with power-of-two scales, as scale_fmt ue8m0 requires.
        string back = Path.Combine(tmp, "hf");
        Converter.ToHf(Path.Combine(tmp, "native"), back, new ConvertOptions());
        Assert.That(Fx.Config(back)["quantization_config"]!["scale_fmt"]!.GetValue<string>(), Is.EqualTo("ue8m0"));
        using (var c = Checkpoint.Open(back))
            foreach (var t in c.Tensors.Where(t => t.Name.EndsWith("_scale_inv", StringComparison.Ordinal)))
                foreach (float v in System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(t.File.GetBytes(t.Info)))
                    Assert.That(BitConverter.SingleToUInt32Bits(v) & 0x7FFFFF, Is.Zero, $"{t.Name}: {v} is not a power of two");
        Directory.Delete(tmp, true);
    }
}
