using System.Text.Json.Nodes;
using Mtp.SafeTensors;
using Mtp.Tests.Shared;

namespace Mtp.Adapters.Tests;

/// <summary>
/// compressed-tensors FP8 (GLM-4.5-FP8's form): per-row scales named <c>weight_scale</c> read from the config, block
/// scales under that name, and every scheme that is not read refused by name.
/// </summary>
[TestFixture]
public class CompressedTensorsTests
{
    static string WithQuantConfig(string fixture, string tag, Action<JsonObject> edit)
    {
        string dir = Fx.Rewrite(Fx.Dir(fixture), tag);
        var cfg = Fx.Config(dir);
        edit((JsonObject)cfg["quantization_config"]!);
        File.WriteAllText(Path.Combine(dir, "config.json"), cfg.ToJsonString());
        return dir;
    }

    static JsonObject Weights(JsonObject q) => (JsonObject)q["config_groups"]!["group_0"]!["weights"]!;

    [TestCase("tensor", null, "weight strategy 'tensor'")]
    [TestCase("group", null, "weight strategy 'group'")]
    [TestCase("channel", 4, "4-bit float weights")]
    [TestCase("block", null, "block_structure")]
    public void AWeightSchemeNotReadIsRefusedByName(string strategy, int? bits, string what)
    {
        string dir = WithQuantConfig("glm-4.5-fp8", "ct-refuse", q =>
        {
            Weights(q)["strategy"] = strategy;
            if (bits != null) Weights(q)["num_bits"] = bits;
        });
        string outDir = Path.Combine(RepoPaths.NewTempDir("ct-out"), "o");
        var e = Assert.Throws<AdapterException>(() => Converter.ToNative(dir, outDir, new ConvertOptions()))!;
        Assert.That(e.Message, Does.Contain("quantization_config (compressed-tensors)").And.Contain(what));
        Assert.That(Directory.Exists(outDir), Is.False);
    }

    [Test]
    public void StaticActivationScalesAreRefused()
    {
        string dir = WithQuantConfig("glm-4.5-fp8", "ct-static", q => q["config_groups"]!["group_0"]!["input_activations"]!["dynamic"] = false);
        var e = Assert.Throws<AdapterException>(() => Converter.ToNative(dir, Path.Combine(RepoPaths.NewTempDir("ct-out"), "o"), new ConvertOptions()))!;
        Assert.That(e.Message, Does.Contain("static activation scales"));
    }

    [Test]
    public void APerRowScaleOfTheWrongShapeNamesTheTensor()
    {
        const string victim = "model.layers.1.self_attn.o_proj.weight_scale";
        string src = Fx.Dir("glm-4.5-fp8");
        TensorSpec spec;
        using (var c = Checkpoint.Open(src))
        {
            var s = c.Tensors.Single(t => t.Name == victim).Info;
            spec = new TensorSpec(victim, s.DType, new[] { s.Shape[0], 2L });
        }
        string dir = Fx.Rewrite(src, "ct-shape", n => n == victim, (spec, new byte[spec.Shape[0] * 2 * 2]));
        var e = Assert.Throws<AdapterException>(() => Converter.ToNative(dir, Path.Combine(RepoPaths.NewTempDir("ct-out"), "o"), new ConvertOptions()))!;
        Assert.That(e.Message, Does.Contain(victim).And.Contain("per-row"));
    }

    /// <summary>
    /// DeepSeek-V3's FP8 weights restated as compressed-tensors block FP8 (<c>weight_scale</c>, block_structure 128x128)
    /// dequantize to exactly what the fixture's own form gives, and return byte for byte.
    /// </summary>
    [Test]
    public void BlockStrategyUnderWeightScaleNamesEqualsTheFixturesOwnForm()
    {
        string src = Fx.Dir("deepseek-v3");
        string dir = RepoPaths.NewTempDir("ct-block");
        using (var c = Checkpoint.Open(src))
        {
            var list = c.Tensors.Select(t => (new TensorSpec(t.Name.EndsWith("_scale_inv", StringComparison.Ordinal) ? t.Name[..^"_inv".Length] : t.Name,
                t.Info.DType, t.Info.Shape), t.File.GetBytes(t.Info).ToArray())).ToList();
            SafeTensorsWriter.WriteFile(Path.Combine(dir, "model.safetensors"), list);
        }
        var cfg = Fx.Config(src);
        cfg["quantization_config"] = JsonNode.Parse("""
            {"quant_method": "compressed-tensors", "format": "float-quantized", "quantization_status": "compressed",
             "config_groups": {"group_0": {"targets": ["Linear"],
               "weights": {"num_bits": 8, "type": "float", "strategy": "block", "block_structure": [128, 128], "symmetric": true, "dynamic": false},
               "input_activations": {"num_bits": 8, "type": "float", "strategy": "group", "group_size": 128, "dynamic": true}}},
             "ignore": ["lm_head"]}
            """);
        File.WriteAllText(Path.Combine(dir, "config.json"), cfg.ToJsonString());

        string tmp = RepoPaths.NewTempDir("ct-block-out");
        string a = Path.Combine(tmp, "own"), b = Path.Combine(tmp, "ct"), back = Path.Combine(tmp, "back");
        Converter.ToNative(src, a, new ConvertOptions());
        Converter.ToNative(dir, b, new ConvertOptions());
        Assert.That(Verifier.Compare(a, b).Identical, Is.True, "same training-layout tensors");
        Converter.ToHf(b, back, new ConvertOptions { Reference = dir });
        Assert.That(Verifier.Compare(dir, back).Identical, Is.True, "back byte for byte");
    }
}
