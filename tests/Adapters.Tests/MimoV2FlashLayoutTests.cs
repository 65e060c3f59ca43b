using System.Text.Json.Nodes;
using Mtp.SafeTensors;
using Mtp.Tests.Shared;

namespace Mtp.Adapters.Tests;

/// <summary>
/// Where MiMo-V2-Flash's tensors land in the training layout (RoundTripTests covers the byte-identical round trip), and
/// that its per-layer kinds (sliding vs full attention, MoE vs dense) and MTP depth are read from the config and the
/// names, never assumed.
/// </summary>
[TestFixture]
public class MimoV2FlashLayoutTests
{
    const string Fixture = "mimo-v2-flash";

    static JsonObject Config() => (JsonObject)JsonNode.Parse(File.ReadAllText(Path.Combine(Fx.Dir(Fixture), "config.json")))!;

    static List<string> HfNames()
    {
        using var c = Checkpoint.Open(Fx.Dir(Fixture));
        return c.Tensors.Select(t => t.Name).ToList();
    }

    [Test]
    public void MtpDepthsMoveToMtpLayersWithTheBlocksNames()
    {
        string tmp = RepoPaths.NewTempDir("mimo2-layout");
        string nat = Path.Combine(tmp, "native");
        Converter.ToNative(Fx.Dir(Fixture), nat, new ConvertOptions());
        HashSet<string> names;
        using (var c = Checkpoint.Open(nat)) names = c.Tensors.Select(t => t.Name).ToHashSet(StringComparer.Ordinal);
        Directory.Delete(tmp, true);
        for (int k = 0; k < 3; k++)
            foreach (string n in new[] { "enorm.weight", "hnorm.weight", "eh_proj.weight", "final_layernorm.weight",
                         "post_attention_layernorm.weight", "self_attn.sinks", "self_attn.k_proj.weight", "mlp.down_proj.weight" })
                Assert.That(names, Does.Contain($"mtp.layers.{k}.{n}"));
        Assert.That(names.Any(n => n.StartsWith("model.mtp.", StringComparison.Ordinal) || n.Contains("pre_mlp_layernorm", StringComparison.Ordinal)), Is.False);
        Assert.That(names.Any(n => n.StartsWith("mtp.layers.", StringComparison.Ordinal) && n.Contains(".experts.", StringComparison.Ordinal)), Is.False, "MTP blocks are dense");
        Assert.That(names, Does.Contain("model.layers.2.mlp.experts.gate_up_proj"));
        Assert.That(names, Does.Contain("model.layers.0.mlp.gate_proj.weight"));
        // transformers' MiMoV2FlashAttention names the sink logits `sinks` (its conversion mapping renames attention_sink_bias).
        Assert.That(names.Count(n => n.EndsWith(".self_attn.sinks", StringComparison.Ordinal)), Is.EqualTo(1 + 3), "layer 1 (sliding) and the three MTP blocks");
        Assert.That(names, Does.Contain("model.layers.1.self_attn.sinks"));
        Assert.That(names.Any(n => n.Contains("attention_sink_bias", StringComparison.Ordinal)), Is.False);
    }

    [Test]
    public void TheMtpDepthIsCountedFromTheNamesWhenTheConfigIsSilent()
    {
        JsonObject config = Config();
        Assert.That(config["num_nextn_predict_layers"], Is.Null, "the fixture's config states no depth, as the release's");
        Assert.That(Families.ReadFacts(Families.MimoV2Flash, config, HfNames()).MtpDepth, Is.EqualTo(3));
        Assert.That(Families.ReadFacts(Families.MimoV2Flash, config, HfNames().Where(n => !n.StartsWith("model.mtp.layers.2.", StringComparison.Ordinal))).MtpDepth, Is.EqualTo(2));
        config["num_nextn_predict_layers"] = 1;
        RuleTable t = Families.BuildTable(Families.MimoV2Flash, config, HfNames());
        Assert.That(t.Facts.MtpDepth, Is.EqualTo(1), "a stated depth wins");
        Assert.That(t.Bindings.Any(b => b.Hf.StartsWith("model.mtp.layers.1.", StringComparison.Ordinal)), Is.False);
    }

    [Test]
    public void ATrainingCheckpointWithoutItsSourceRecordStillKnowsItsMtpDepth()
    {
        string tmp = RepoPaths.NewTempDir("mimo2-norecord");
        string nat = Path.Combine(tmp, "native"), back = Path.Combine(tmp, "hf");
        Converter.ToNative(Fx.Dir(Fixture), nat, new ConvertOptions());
        File.Delete(Path.Combine(nat, Converter.ReportFileName));
        Converter.ToHf(nat, back, new ConvertOptions { DType = DType.BF16 });
        using (var c = Checkpoint.Open(back))
        {
            Assert.That(c.Contains("model.mtp.layers.2.pre_mlp_layernorm.weight"), Is.True);
            Assert.That(c.Contains("model.mtp.layers.0.self_attn.q_proj.weight"), Is.True);
            Assert.That(c.Tensors.Any(t => t.Name.StartsWith("mtp.", StringComparison.Ordinal)), Is.False);
        }
        Directory.Delete(tmp, true);
    }

    [Test]
    public void SinksAndExpertsFollowTheLayerPatterns()
    {
        JsonObject config = Config();
        config["hybrid_layer_pattern"] = new JsonArray(1, 0, 1);
        config["moe_layer_freq"] = new JsonArray(1, 1, 0);
        RuleTable t = Families.BuildTable(Families.MimoV2Flash, config, HfNames());
        var hf = t.Bindings.Select(b => b.Hf).ToHashSet(StringComparer.Ordinal);
        Assert.That(hf, Does.Contain("model.layers.0.self_attn.attention_sink_bias"));
        Assert.That(hf, Does.Not.Contain("model.layers.1.self_attn.attention_sink_bias"));
        Assert.That(hf, Does.Contain("model.layers.2.mlp.gate_proj.weight"));
        Assert.That(hf, Does.Contain("model.layers.0.mlp.gate.e_score_correction_bias"));
        Assert.That(hf, Does.Not.Contain("model.layers.2.mlp.gate.weight"));
        Assert.That(hf, Does.Contain("model.mtp.layers.0.self_attn.attention_sink_bias"), "MTP blocks are sliding-window");

        // transformers' spelling of the same kinds reads the same way
        config.Remove("hybrid_layer_pattern");
        config.Remove("moe_layer_freq");
        config["layer_types"] = new JsonArray("sliding_attention", "full_attention", "sliding_attention");
        config["mlp_layer_types"] = new JsonArray("sparse", "sparse", "dense");
        var hf2 = Families.BuildTable(Families.MimoV2Flash, config, HfNames()).Bindings.Select(b => b.Hf).ToHashSet(StringComparer.Ordinal);
        Assert.That(hf2, Is.EquivalentTo(hf));

        config["add_swa_attention_sink_bias"] = false;
        var noSink = Families.BuildTable(Families.MimoV2Flash, config, HfNames()).Bindings.Select(b => b.Hf);
        Assert.That(noSink.Any(n => n.EndsWith("attention_sink_bias", StringComparison.Ordinal)), Is.False);
    }

    [TestCase("hybrid_layer_pattern", "[0, 1]", "3 layers")]
    [TestCase("hybrid_layer_pattern", "[0, 2, 1]", "0 or 1")]
    [TestCase("moe_layer_freq", "1", "an array")]
    [TestCase("mlp_layer_types", "[\"dense\", \"moe\", \"sparse\"]", "\"sparse\" or \"dense\"")]
    public void AMalformedLayerListIsOneClearError(string key, string value, string says)
    {
        JsonObject config = Config();
        if (key == "mlp_layer_types") config.Remove("moe_layer_freq");
        config[key] = JsonNode.Parse(value);
        var e = Assert.Throws<AdapterException>(() => Families.BuildTable(Families.MimoV2Flash, config, HfNames()))!;
        Assert.That(e.Kind, Is.EqualTo(AdapterErrorKind.Malformed));
        Assert.That(e.Message, Does.StartWith("config.json: '" + key + "'").And.Contain(says));
    }

    static IReadOnlyList<string> OpsOf(string converted, string tensor) =>
        ((JsonArray)JsonNode.Parse(File.ReadAllText(Path.Combine(converted, "conversion.json")))!["tensors"]!)
        .Single(t => (string)t!["name"]! == tensor)!["ops"]!.AsArray().Select(o => (string)o!).ToList();

    [Test]
    public void TheFullAttentionKProjIsReadPerKvHeadAndOnlyWhereItsGridSaysSo()
    {
        // The fixture's full-attention layers (0, 2) have 2 KV heads of 192 rows whose k_proj PyTorch quantized head by head
        // (grid [4, 1]; RoundTripTests and FixtureReferenceTests compare the values with PyTorch's bit for bit).
        const string k0 = "model.layers.0.self_attn.k_proj.weight";
        string tmp = RepoPaths.NewTempDir("mimo2-kgrid");
        string nat = Path.Combine(tmp, "native"), back = Path.Combine(tmp, "hf");
        Converter.ToNative(Fx.Dir(Fixture), nat, new ConvertOptions());
        Assert.That(OpsOf(nat, k0), Has.Some.EqualTo("dequantize FP8 E4M3 with F32 block scales 128x128 per 192 rows -> BF16"));
        Assert.That(OpsOf(nat, "model.layers.2.self_attn.k_proj.weight"), Has.Some.Contains("128x128 per 192 rows"));
        foreach (string uniform in new[] { "model.layers.1.self_attn.k_proj.weight", "model.layers.0.self_attn.q_proj.weight", "mtp.layers.0.self_attn.k_proj.weight" })
            Assert.That(OpsOf(nat, uniform), Has.Some.EqualTo("dequantize FP8 E4M3 with F32 block scales 128x128 -> BF16"), uniform);
        // Dequantized in pieces of one block row or one head (5,000-byte blocks split the BF16 k_proj head by head): the same bytes.
        string split = Path.Combine(tmp, "split");
        Converter.ToNative(Fx.Dir(Fixture), split, new ConvertOptions { BlockBytes = 5000 });
        Assert.That(Verifier.Compare(nat, split).Identical, Is.True);
        // Written back without the reference: the recorded grid gives the per-head block again.
        Converter.ToHf(nat, back, new ConvertOptions());
        Assert.That(OpsOf(back, k0), Has.Some.EqualTo("quantize to FP8 E4M3 with F32 block scales 128x128 per 192 rows"));
        using (var c = Checkpoint.Open(back)) Assert.That(c.Get(k0 + "_scale_inv").Info.Shape, Is.EqualTo(new long[] { 4, 1 }));

        // The same weight with a uniform grid ([3, 1], as a tool blocking the whole matrix would write it) is read uniformly,
        // and round trips byte for byte.
        var scales = new byte[3 * 4];
        for (int i = 0; i < 3; i++) BitConverter.TryWriteBytes(scales.AsSpan(i * 4), 1f / (64 << i));
        string fx = Fx.Rewrite(Fx.Dir(Fixture), "mimo2-kgrid-uniform", n => n == k0 + "_scale_inv",
            (new TensorSpec(k0 + "_scale_inv", DType.F32, new long[] { 3, 1 }), scales));
        string nat2 = Path.Combine(tmp, "native2"), back2 = Path.Combine(tmp, "hf2");
        Converter.ToNative(fx, nat2, new ConvertOptions { DType = DType.F32 });
        Assert.That(OpsOf(nat2, k0), Has.Some.EqualTo("dequantize FP8 E4M3 with F32 block scales 128x128 -> F32"));
        using (var hf = Checkpoint.Open(fx))
        using (var n2 = Checkpoint.Open(nat2))
        {
            // Row r's values are its codes times scale r / 128: compared through the per-head output of the same codes,
            // which used scale row (r / 192) * 2 + (r % 192) / 128 of the stored per-head grid.
            using var n1 = Checkpoint.Open(nat);
            ReadOnlySpan<float> got = System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(n2.Get(k0).File.GetBytes(n2.Get(k0).Info));
            Assert.That(got.Length, Is.EqualTo(384 * 32));
            using var orig = Checkpoint.Open(Fx.Dir(Fixture));
            ReadOnlySpan<float> perHead = System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(orig.Get(k0 + "_scale_inv").File.GetBytes(orig.Get(k0 + "_scale_inv").Info));
            var bf16 = System.Runtime.InteropServices.MemoryMarshal.Cast<byte, ushort>(n1.Get(k0).File.GetBytes(n1.Get(k0).Info)).ToArray();
            for (int r = 0; r < 384; r++)
            for (int j = 0; j < 32; j++)
            {
                float code = BitConverter.Int32BitsToSingle(bf16[r * 32 + j] << 16) / perHead[r / 192 * 2 + r % 192 / 128]; // exact: a code, BF16-rounded
                float want = code * (1f / (64 << (r / 128)));
                if (MathF.Abs(got[r * 32 + j] - want) > MathF.Abs(want) * 1e-2f) Assert.Fail($"[{r},{j}]: {got[r * 32 + j]} vs {want}");
            }
        }
        Converter.ToHf(nat2, back2, new ConvertOptions { Reference = fx });
        Assert.That(Verifier.Compare(fx, back2).Identical, Is.True);
        Directory.Delete(tmp, true);
    }

    [Test]
    public void VerifyMeasuresAChangedPerHeadKProjWithItsOwnHeadsScale()
    {
        // One code of head 0's row 100 (scale row 0 per head, where a uniform 96-row reading of the [4, 1] grid would use
        // scale row 1) set to zero: the difference verify reports is PyTorch's value there.
        const string k0 = "model.layers.0.self_attn.k_proj.weight";
        const int row = 100;
        string fx = Fx.Dir(Fixture);
        byte[] codes;
        using (var c = Checkpoint.Open(fx)) codes = c.Get(k0).File.GetBytes(c.Get(k0).Info).ToArray();
        int j = Enumerable.Range(0, 32).First(j => (codes[row * 32 + j] & 0x7F) != 0);
        codes[row * 32 + j] = 0;
        string changed = Fx.Rewrite(fx, "mimo2-kgrid-verify", n => n == k0, (new TensorSpec(k0, DType.F8_E4M3, new long[] { 384, 32 }), codes));
        float want;
        using (var r = SafeTensorsFile.Open(Path.Combine(fx, "reference", "dequant_f32.safetensors")))
            want = MathF.Abs(System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(r.GetBytes(k0))[row * 32 + j]);
        var d = Verifier.Compare(fx, changed).Differences.Single();
        Assert.That(d.Name, Is.EqualTo(k0));
        Assert.That(d.FirstIndex, Is.EqualTo(row * 32 + j));
        Assert.That(d.MaxAbsDiff, Is.EqualTo((double)want));
    }
}
