using Mtp.SafeTensors;
using Mtp.Tests.Shared;

namespace Mtp.Adapters.Tests;

[TestFixture]
public class StrictnessTests
{
    static AdapterException ConvertFails(string dir)
    {
        string outDir = Path.Combine(RepoPaths.NewTempDir("fail"), "out");
        var e = Assert.Throws<AdapterException>(() => Converter.ToNative(dir, outDir, new ConvertOptions()))!;
        Assert.That(Directory.Exists(outDir), Is.False, "no partial output");
        Assert.That(Directory.GetDirectories(Path.GetDirectoryName(outDir)!), Is.Empty, "temporary directory removed");
        return e;
    }

    [TestCase("deepseek-v3", "model.layers.2.mlp.experts.3.up_proj.weight")]
    [TestCase("deepseek-v3", "model.layers.1.self_attn.q_b_proj.weight_scale_inv")]
    [TestCase("deepseek-v3", "model.layers.3.eh_proj.weight")]
    [TestCase("deepseek-v3", "model.layers.3.shared_head.head.weight")]
    [TestCase("deepseek-v3", "model.layers.3.mlp.experts.0.down_proj.weight")]
    [TestCase("deepseek-v4-flash", "layers.1.ffn.experts.2.w3.weight")]
    [TestCase("deepseek-v4-flash", "layers.1.ffn.experts.2.w3.scale")]
    [TestCase("deepseek-v4-flash", "mtp.0.e_proj.weight")]
    [TestCase("deepseek-v4-flash", "mtp.0.hc_head_fn")]
    [TestCase("deepseek-v4-legacy-mtp", "layers.1.eh_proj.weight")]
    [TestCase("qwen3.5-moe", "model.language_model.layers.0.mlp.experts.gate_up_proj")]
    [TestCase("qwen3.5-moe", "mtp.layers.0.mlp.experts.1.gate_proj.weight")]
    [TestCase("qwen3.5-moe", "mtp.pre_fc_norm_hidden.weight")]
    [TestCase("qwen3.5-moe-fp8", "mtp.layers.0.self_attn.q_proj.weight_scale_inv")]
    [TestCase("qwen3.6-moe", "mtp.layers.0.mlp.experts.down_proj")]
    [TestCase("qwen3-next", "model.layers.1.linear_attn.in_proj_ba.weight")]
    [TestCase("qwen3-next", "mtp.fc.weight")]
    [TestCase("deepseek-v3.2", "model.layers.1.self_attn.indexer.wk.weight_scale_inv")]
    [TestCase("deepseek-v3.2", "model.layers.3.self_attn.indexer.k_norm.bias")]
    [TestCase("glm-4.5", "model.layers.1.self_attn.k_proj.bias")]
    [TestCase("glm-4.5", "model.layers.3.eh_proj.weight")]
    [TestCase("glm-4.5", "model.layers.3.mlp.shared_experts.up_proj.weight")]
    [TestCase("glm-4.5-fp8", "model.layers.1.self_attn.o_proj.weight_scale")]
    [TestCase("glm-4.5-fp8", "model.layers.3.mlp.experts.0.up_proj.weight_scale")]
    [TestCase("glm-5", "model.layers.3.self_attn.indexer.k_norm.bias")]
    [TestCase("glm-5", "model.layers.3.shared_head.head.weight")]
    [TestCase("glm-5", "model.layers.1.mlp.experts.2.down_proj.weight")]
    [TestCase("mimo", "model.mtp_layers.0.hidden_layernorm.weight")]
    [TestCase("mimo", "model.mtp_layers.0.self_attn.v_proj.bias")]
    [TestCase("mimo", "model.layers.2.self_attn.k_proj.bias")]
    [TestCase("mimo-v2-flash", "model.layers.1.self_attn.attention_sink_bias")]
    [TestCase("mimo-v2-flash", "model.layers.2.self_attn.k_proj.weight_scale_inv")]
    [TestCase("mimo-v2-flash", "model.layers.2.mlp.experts.3.down_proj.weight")]
    [TestCase("mimo-v2-flash", "model.mtp.layers.2.pre_mlp_layernorm.weight")]
    [TestCase("mimo-v2-flash", "model.mtp.layers.1.eh_proj.weight")]
    public void DeletingAnExpectedTensorFailsNamingIt(string fixture, string victim)
    {
        string dir = Fx.Rewrite(Fx.Dir(fixture), "del", n => n == victim);
        var e = ConvertFails(dir);
        Assert.That(e.Message, Does.Contain(victim));
        Assert.That(e.Message, Does.Contain("missing"));
        Assert.That(e.Kind, Is.EqualTo(AdapterErrorKind.Inconsistent));
    }

    [TestCase("deepseek-v3")]
    [TestCase("deepseek-v4-flash")]
    [TestCase("qwen3.5-moe-fp8")]
    [TestCase("deepseek-v3.2")]
    [TestCase("glm-4.5")]
    [TestCase("glm-4.5-fp8")]
    [TestCase("glm-5")]
    [TestCase("mimo")]
    [TestCase("mimo-v2-flash")]
    public void AnUnknownTensorFailsUnlessAllowed(string fixture)
    {
        var extra = (new TensorSpec("model.layers.0.mystery.weight", DType.BF16, new long[] { 2, 2 }), new byte[8]);
        string dir = Fx.Rewrite(Fx.Dir(fixture), "unk", add: extra);
        var e = ConvertFails(dir);
        Assert.That(e.Message, Does.Contain("model.layers.0.mystery.weight"));
        Assert.That(e.Message, Does.Contain("--allow-unknown"));

        string tmp = RepoPaths.NewTempDir("unk-ok");
        string nat = Path.Combine(tmp, "n"), back = Path.Combine(tmp, "h");
        var r = Converter.ToNative(dir, nat, new ConvertOptions { AllowUnknown = true });
        Assert.That(r.CarriedUnknown, Is.EqualTo(new[] { "model.layers.0.mystery.weight" }));
        Converter.ToHf(nat, back, new ConvertOptions { Reference = dir, AllowUnknown = true });
        Assert.That(Verifier.Compare(dir, back).Identical, Is.True);
    }

    [Test]
    public void AScaleWithoutQuantizedWeightIsUnknown()
    {
        var extra = (new TensorSpec("model.layers.0.input_layernorm.weight_scale_inv", DType.F32, new long[] { 1, 1 }), new byte[4]);
        var e = ConvertFails(Fx.Rewrite(Fx.Dir("deepseek-v3"), "orphan", add: extra));
        Assert.That(e.Message, Does.Contain("input_layernorm.weight_scale_inv"));
    }

    [Test]
    public void ABadScaleShapeIsMalformed()
    {
        string fx = Fx.Dir("deepseek-v3");
        const string victim = "model.layers.0.mlp.down_proj.weight_scale_inv";
        var extra = (new TensorSpec(victim, DType.F32, new long[] { 3, 3 }), new byte[36]);
        var e = ConvertFails(Fx.Rewrite(fx, "badscale", n => n == victim, extra));
        Assert.That(e.Kind, Is.EqualTo(AdapterErrorKind.Malformed));
        Assert.That(e.Message, Does.Contain(victim));
    }

    [TestCase("model.layers.0.self_attn.k_proj", 384, 2, "expected [3, 1]) or block 128x128 per 192 rows (expected [4, 1])")]
    [TestCase("model.layers.1.self_attn.k_proj", 768, 8, "with block 128x128 (expected [6, 1])")] // sliding (4 heads of 192): a per-head grid is not read
    [TestCase("model.layers.0.self_attn.q_proj", 768, 8, "with block 128x128 (expected [6, 1])")] // 4 heads of 192: only k_proj is per head
    public void AScaleGridThatFitsNeitherReadingIsRefusedNamingTheTensor(string weight, int rows, int gridRows, string expected)
    {
        // MiMo-V2-Flash's full-attention k_proj may be blocked per KV head (the fixture's 2 heads x 192 rows: [4, 1]) or
        // uniformly ([3, 1]); any other grid, and a per-head grid on any other weight, is refused, never guessed.
        string victim = weight + ".weight_scale_inv";
        var extra = (new TensorSpec(victim, DType.F32, new long[] { gridRows, 1 }), new byte[gridRows * 4]);
        var e = ConvertFails(Fx.Rewrite(Fx.Dir("mimo-v2-flash"), "kgrid", n => n == victim, extra));
        Assert.That(e.Kind, Is.EqualTo(AdapterErrorKind.Malformed));
        Assert.That(e.Message, Does.Contain($"tensor '{victim}'").And.Contain($"[{gridRows}, 1] does not fit weight [{rows}, 32]").And.Contain(expected));
        Assert.That(e.Message.Split('\n'), Has.Length.EqualTo(1));
    }

    [Test]
    public void NonEmptyOutputNeedsForceAndInputIsNeverTheOutput()
    {
        string fx = Fx.Dir("deepseek-v3");
        string outDir = RepoPaths.NewTempDir("force");
        File.WriteAllText(Path.Combine(outDir, "keep.txt"), "x");
        var e = Assert.Throws<AdapterException>(() => Converter.ToNative(fx, outDir, new ConvertOptions()))!;
        Assert.That(e.Kind, Is.EqualTo(AdapterErrorKind.Usage));
        Assert.That(File.Exists(Path.Combine(outDir, "keep.txt")), Is.True);
        // --force replaces only a previous output: this folder is none, so it needs --force-any.
        e = Assert.Throws<AdapterException>(() => Converter.ToNative(fx, outDir, new ConvertOptions { Force = true }))!;
        Assert.That(e.Kind, Is.EqualTo(AdapterErrorKind.Usage));
        Assert.That(e.Message, Does.Contain("keep.txt"));
        Converter.ToNative(fx, outDir, new ConvertOptions { ForceAny = true });
        Assert.That(File.Exists(Path.Combine(outDir, "keep.txt")), Is.False);
        Converter.ToNative(fx, outDir, new ConvertOptions { Force = true });
        Assert.Throws<AdapterException>(() => Converter.ToNative(fx, fx, new ConvertOptions { Force = true }));
    }

    [Test]
    public void TiedCopiesAreDroppedWithAReasonAndDifferentOnesKept()
    {
        string fx = Fx.Dir("deepseek-v3");
        string tmp = RepoPaths.NewTempDir("tied");
        var r = Converter.ToNative(fx, Path.Combine(tmp, "a"), new ConvertOptions());
        Assert.That(r.Dropped.Select(d => d.Name), Is.EquivalentTo(new[] { "model.layers.3.embed_tokens.weight", "model.layers.3.shared_head.head.weight" }));
        Assert.That(r.Dropped.All(d => d.Reason.Contains("identical")), Is.True);

        // A fine-tuned head copy that differs is kept under the MTP prefix and written back.
        const string head = "model.layers.3.shared_head.head.weight";
        byte[] changed;
        using (var c = Checkpoint.Open(fx)) { changed = c.Get(head).File.GetBytes(c.Get(head).Info).ToArray(); changed[0] ^= 1; }
        string dir = Fx.Rewrite(fx, "tied2", n => n == head, (new TensorSpec(head, DType.BF16, new long[] { 256, 32 }), changed));
        var r2 = Converter.ToNative(dir, Path.Combine(tmp, "b"), new ConvertOptions());
        Assert.That(r2.Dropped.Select(d => d.Name), Is.EqualTo(new[] { "model.layers.3.embed_tokens.weight" }));
        using (var c = Checkpoint.Open(Path.Combine(tmp, "b"))) Assert.That(c.Contains("mtp.layers.0.shared_head.head.weight"), Is.True);
        Converter.ToHf(Path.Combine(tmp, "b"), Path.Combine(tmp, "c"), new ConvertOptions { Reference = dir });
        Assert.That(Verifier.Compare(dir, Path.Combine(tmp, "c")).Identical, Is.True);
    }
}
