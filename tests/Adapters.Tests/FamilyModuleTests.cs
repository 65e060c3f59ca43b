using System.Text.Json.Nodes;
using Mtp.SafeTensors;

namespace Mtp.Adapters.Tests;

[TestFixture]
public class FamilyModuleTests
{
    [Test]
    public void EveryFamilyHasOneModuleInTheRegistry()
    {
        Assert.That(FamilyRegistry.Modules.Select(m => m.Id), Is.EqualTo(Families.All));
        foreach (string id in Families.All) Assert.That(FamilyRegistry.Module(id)!.Identity, Is.SameAs(FamilyRegistry.ById(id)));
        Assert.That(FamilyRegistry.Module("llama"), Is.Null);
        Assert.Throws<AdapterException>(() => Families.ReadFacts("llama", new JsonObject { ["num_hidden_layers"] = 1 }));
    }

    [Test]
    public void QuantSchemesNameScalesAsTheReleasesDo()
    {
        var v3 = Families.Module(Families.DeepSeekV3).Quant;
        var v4 = Families.Module(Families.DeepSeekV4).Quant;
        Assert.That(v3.ScaleNameOf("model.layers.0.mlp.down_proj.weight"), Is.EqualTo("model.layers.0.mlp.down_proj.weight_scale_inv"));
        Assert.That(v4.ScaleNameOf("layers.0.attn.wq_a.weight"), Is.EqualTo("layers.0.attn.wq_a.scale"));
        Assert.That((v3.ScaleDType, v4.ScaleDType), Is.EqualTo((DType.F32, DType.F8_E8M0)));
        Assert.That(v4.Fp4Group, Is.EqualTo(32));
        Assert.That(Families.Module(Families.Qwen35).Quant.Naming, Is.EqualTo(ScaleNaming.ScaleInv));
        Assert.That(FamilyRegistry.ScaleNameCandidates("a.weight"), Is.EqualTo(new[] { "a.weight_scale_inv", "a.scale", "a.weight_scale" }));
        // compressed-tensors' names come from the config, for any family.
        var ct = (System.Text.Json.Nodes.JsonObject)System.Text.Json.Nodes.JsonNode.Parse("""{"quantization_config": {"quant_method": "compressed-tensors"}}""")!;
        Assert.That(CompressedTensors.SchemeFor(ct, v3).ScaleNameOf("a.weight"), Is.EqualTo("a.weight_scale"));
        Assert.That(CompressedTensors.SchemeFor(new System.Text.Json.Nodes.JsonObject(), v3), Is.SameAs(v3));
    }

    [Test]
    public void NormalizeReadsTheOneSpellingTable()
    {
        foreach (var (given, id) in new[] { ("DeepSeek_V3", Families.DeepSeekV3), ("deepseekv4", Families.DeepSeekV4), ("deepseek-v4-flash", Families.DeepSeekV4),
                     ("qwen3_5_moe", Families.Qwen35), ("qwen3.5-moe", Families.Qwen35), ("qwen3_next", Families.Qwen3Next) })
            Assert.That(Families.Normalize(given), Is.EqualTo(id), given);
        Assert.That(Families.Normalize("llama"), Is.Null);
        Assert.That(Families.Normalize("qwen3_5_text"), Is.Null, "text_config model types are not family names");
    }

    [Test]
    public void MoeLayerRulesAndMtpDepthFromNames()
    {
        Assert.That(DeepSeekV3Family.MoeLayers(4, 1, 8, 1, 2), Is.EqualTo(new[] { false, false, true, false, true }));
        Assert.That(DeepSeekV3Family.MoeLayers(2, 1, 0, 0, 1), Is.All.False);
        Assert.That(QwenFamily.MoeLayers(3, 1, 4, new HashSet<int> { 0 }, 1), Is.EqualTo(new[] { false, true, true, true }));
        Assert.That(MtpNames.LayerDepthCount(new[] { "mtp.layers.2.x", "mtp.fc.weight", "model.layers.9.y" }), Is.EqualTo(3));
        Assert.That(MtpNames.TryLayerDepth("mtp.0.x", out _), Is.False);
    }
}
