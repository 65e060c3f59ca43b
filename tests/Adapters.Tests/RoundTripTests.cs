using System.Text.Json.Nodes;
using Mtp.SafeTensors;
using Mtp.Tests.Shared;

namespace Mtp.Adapters.Tests;

[TestFixture]
public class RoundTripTests
{
    /// <summary>Every fixture the generator wrote (fixtures/manifest.json).</summary>
    public static readonly string[] AllFixtures =
        ((JsonObject)JsonNode.Parse(File.ReadAllText(Path.Combine(RepoPaths.Fixtures, "manifest.json")))!["fixtures"]!).Select(kv => kv.Key).ToArray();

    [TestCaseSource(nameof(AllFixtures))]
    public void ToNativeMatchesReferenceAndRoundTripsByteIdentical(string fixture)
    {
        string fx = Fx.Dir(fixture);
        string tmp = RepoPaths.NewTempDir("rt-" + fixture);
        string nat = Path.Combine(tmp, "native"), back = Path.Combine(tmp, "hf");
        var r = Converter.ToNative(fx, nat, new ConvertOptions());
        Assert.That(r.TensorsWritten, Is.GreaterThan(0));
        CheckAgainstReference(fx, nat, DType.BF16);
        CheckContract(fx, nat);

        var b = Converter.ToHf(nat, back, new ConvertOptions { Reference = fx });
        var v = Verifier.Compare(fx, back);
        Assert.That(v.Identical, Is.True, () => v.ToJson().ToJsonString());
        Assert.That(b.Requantized, Is.Empty);

        // DeepSeek-V4 (E8M0 scales) re-encodes every quantized weight from the scales alone; V3's F32 scales need the codes.
        var use = (JsonObject)JsonNode.Parse(File.ReadAllText(Path.Combine(back, "conversion.json")))!["reference_use"]!;
        int exact = use["reencoded_exactly_from_scales"]!.GetValue<int>(), compared = use["compared_with_reference_codes"]!.GetValue<int>();
        using (var c = Checkpoint.Open(fx))
        {
            int quantized = c.Tensors.Count(t => t.Info.DType is DType.F8_E4M3 || t.Name.Contains(".experts.") && t.Info.DType == DType.I8);
            Assert.That(exact + compared, Is.EqualTo(quantized), "every quantized weight is accounted for");
        }
        if (fixture.StartsWith("deepseek-v4", StringComparison.Ordinal))
        {
            Assert.That(exact, Is.GreaterThan(0));
            Assert.That(compared, Is.Zero, "no V4 weight needed its reference codes");
        }
        if (fixture == "deepseek-v3")
        {
            Assert.That(exact, Is.Zero, "F32 scales: never re-encoded from the scales alone");
            Assert.That(compared, Is.GreaterThan(0));
        }
        Directory.Delete(tmp, true);
    }

    [TestCase("deepseek-v3")]
    [TestCase("deepseek-v3.2")]
    [TestCase("deepseek-v4-flash")]
    public void F32ToNativeMatchesReferenceAndRoundTrips(string fixture)
    {
        string fx = Fx.Dir(fixture);
        string tmp = RepoPaths.NewTempDir("rt32-" + fixture);
        string nat = Path.Combine(tmp, "native"), back = Path.Combine(tmp, "hf");
        Converter.ToNative(fx, nat, new ConvertOptions { DType = DType.F32 });
        CheckAgainstReference(fx, nat, DType.F32);
        Converter.ToHf(nat, back, new ConvertOptions { Reference = fx });
        Assert.That(Verifier.Compare(fx, back).Identical, Is.True);
        Directory.Delete(tmp, true);
    }

    [TestCase("deepseek-v3")]
    [TestCase("deepseek-v3.2")]
    [TestCase("qwen3.5-moe-fp8")]
    [TestCase("mimo-v2-flash")]
    public void WithoutReferenceUsesRecordedSchemeAndCanonicalScales(string fixture)
    {
        string fx = Fx.Dir(fixture);
        string tmp = RepoPaths.NewTempDir("noref-" + fixture);
        string nat = Path.Combine(tmp, "native"), back = Path.Combine(tmp, "hf"), nat2 = Path.Combine(tmp, "native2");
        Converter.ToNative(fx, nat, new ConvertOptions());
        Converter.ToHf(nat, back, new ConvertOptions());
        var v = Verifier.Compare(fx, back);
        Assert.That(v.OnlyInA, Is.Empty);
        Assert.That(v.OnlyInB, Is.Empty);
        Assert.That(v.Differences.Where(d => d.Kind != "bytes"), Is.Empty);
        Assert.That(Fx.Config(back)["quantization_config"], Is.Not.Null);
        // Canonical re-quantization is stable: importing it again gives the same training checkpoint within FP8 precision.
        Converter.ToNative(back, nat2, new ConvertOptions());
        var v2 = Verifier.Compare(nat, nat2, tolerance: 0.25);
        Assert.That(v2.Passed, Is.True, () => v2.ToJson().ToJsonString());
        Directory.Delete(tmp, true);
    }

    [Test]
    public void PerExpertLayoutRoundTrips()
    {
        string fx = Fx.Dir("deepseek-v3");
        string tmp = RepoPaths.NewTempDir("perexp");
        string nat = Path.Combine(tmp, "native"), back = Path.Combine(tmp, "hf");
        Converter.ToNative(fx, nat, new ConvertOptions { PerExpertLayout = true });
        using (var c = Checkpoint.Open(nat))
        {
            Assert.That(c.Contains("model.layers.1.mlp.experts.3.gate_proj.weight"), Is.True);
            Assert.That(c.Contains("model.layers.1.mlp.experts.gate_up_proj"), Is.False);
        }
        Converter.ToHf(nat, back, new ConvertOptions { Reference = fx });
        Assert.That(Verifier.Compare(fx, back).Identical, Is.True);
        Directory.Delete(tmp, true);
    }

    /// <summary>Every quantized weight's dequantization equals PyTorch's, bit for bit, wherever it landed in the training layout.</summary>
    static void CheckAgainstReference(string fx, string nat, DType dtype)
    {
        string refPath = Path.Combine(fx, "reference", dtype == DType.F32 ? "dequant_f32.safetensors" : "dequant_bf16.safetensors");
        if (!File.Exists(refPath)) return; // unquantized fixture
        using var reference = Checkpoint.Open(refPath);
        using var c = Checkpoint.Open(nat);
        var report = (JsonObject)JsonNode.Parse(File.ReadAllText(Path.Combine(nat, "conversion.json")))!;
        // Source weight name -> (output tensor, byte offset): walk each output's sources in order.
        var where = new Dictionary<string, (string Out, long Offset)>();
        foreach (var t in report["tensors"]!.AsArray().OfType<JsonObject>())
        {
            string name = t["name"]!.GetValue<string>();
            long off = 0;
            foreach (var s in t["sources"]!.AsArray().Select(x => x!.GetValue<string>()))
            {
                if (!reference.TryGet(s, out var rl)) continue;
                where[s] = (name, off);
                off += rl.Info.ByteLength;
            }
        }
        int n = 0;
        foreach (var rt in reference.Tensors)
        {
            Assert.That(where.TryGetValue(rt.Name, out var w), Is.True, $"{rt.Name} not found in the output's sources");
            var ot = c.Get(w.Out);
            Assert.That(ot.Info.DType, Is.EqualTo(dtype), w.Out);
            var got = ot.File.GetData(ot.Info).Slice(w.Offset, (int)rt.Info.ByteLength);
            Assert.That(got.SequenceEqual(rt.File.GetBytes(rt.Info)), Is.True, $"{rt.Name} (in {w.Out} at {w.Offset}) differs from PyTorch's dequantization");
            n++;
        }
        Assert.That(n, Is.GreaterThan(0));
    }

    static void CheckContract(string fx, string nat)
    {
        using var c = Checkpoint.Open(nat);
        var names = c.Tensors.Select(t => t.Name).ToHashSet();
        Assert.That(names, Does.Contain("model.embed_tokens.weight"));
        Assert.That(names, Does.Contain("model.norm.weight"));
        Assert.That(names, Does.Contain("mtp.layers.0.enorm.weight"));
        Assert.That(names, Does.Contain("mtp.layers.0.hnorm.weight"));
        Assert.That(names, Does.Contain("mtp.layers.0.final_layernorm.weight"));
        // Every routed-expert group of the source (main layers and MTP depths: MiMo has none, MiMo-V2-Flash's MTP blocks
        // are dense) becomes one stacked pair.
        using (var hf = Checkpoint.Open(fx))
        {
            var groups = hf.Tensors.Select(t => System.Text.RegularExpressions.Regex.Match(t.Name, @"^(.*)\.(?:mlp|ffn)\.experts\."))
                .Where(m => m.Success).Select(m => m.Groups[1].Value).Distinct().Count();
            Assert.That(names.Count(n => n.EndsWith(".mlp.experts.gate_up_proj", StringComparison.Ordinal)), Is.EqualTo(groups));
        }
        foreach (var t in c.Tensors.Where(t => t.Name.EndsWith("mlp.experts.gate_up_proj")))
        {
            var d = c.Get(t.Name[..^"gate_up_proj".Length] + "down_proj");
            Assert.That(t.Info.Shape.Length, Is.EqualTo(3));
            Assert.That(d.Info.Shape, Is.EqualTo(new[] { t.Info.Shape[0], t.Info.Shape[2], t.Info.Shape[1] / 2 }));
        }
        // No quantization scale is left; V4's hyper-connection scales (attn_hc.scale, ffn_hc.scale, MTP hc_head) are parameters.
        Assert.That(names.Where(n => n.Contains("_scale_inv") || n.EndsWith(".scale") && !n.Contains("hc_head") && !n.EndsWith("_hc.scale")), Is.Empty);
        var cfg = Fx.Config(nat);
        Assert.That(cfg["quantization_config"], Is.Null);
        Assert.That(File.Exists(Path.Combine(nat, "conversion.json")), Is.True);
    }
}
