using Mtp.SafeTensors;
using TorchSharp;
using static TorchSharp.torch;

namespace Mtp.Model.Tests;

public class LoadTests
{
    [Test]
    public void LoadsStrictlyAndEveryTensorLands()
    {
        string dir = TestUtil.Tiny();
        using var model = DeepSeekV3Model.Load(dir, CPU, ScalarType.Float32);
        var state = model.StateDict();
        using var ck = Checkpoint.Open(dir);
        Assert.That(state.Keys.OrderBy(k => k, StringComparer.Ordinal), Is.EqualTo(ck.Tensors.Select(t => t.Name).OrderBy(k => k, StringComparer.Ordinal)));
        foreach (var loc in ck.Tensors)
            Assert.That(TestUtil.F(state[loc.Name]), Is.EqualTo(CheckpointIO.ReadFloat(loc.File.GetBytes(loc.Info), loc.Info)), loc.Name);
        // Names of the contract.
        Assert.That(state.Keys, Does.Contain("model.layers.0.mlp.gate_proj.weight"));
        Assert.That(state.Keys, Does.Contain("model.layers.1.mlp.experts.gate_up_proj"));
        Assert.That(state.Keys, Does.Contain("model.layers.2.mlp.gate.e_score_correction_bias"));
        Assert.That(state.Keys, Does.Contain("mtp.layers.0.eh_proj.weight"));
        Assert.That(state.Keys, Does.Contain("mtp.layers.0.mlp.experts.down_proj"));
        Assert.That(state.Keys, Does.Contain("mtp.layers.0.self_attn.kv_a_proj_with_mqa.weight"));
        Assert.That(state["mtp.layers.0.eh_proj.weight"].shape, Is.EqualTo(new long[] { 64, 128 }));
        Assert.That(state["model.layers.1.mlp.experts.gate_up_proj"].shape, Is.EqualTo(new long[] { 4, 64, 64 }));
        Assert.That(state["model.layers.1.mlp.experts.down_proj"].shape, Is.EqualTo(new long[] { 4, 64, 32 }));
        Assert.That(state["model.layers.1.mlp.gate.e_score_correction_bias"].dtype, Is.EqualTo(ScalarType.Float32));
        // The bias is a buffer, not trained.
        Assert.That(model.TrainableParameters().Select(p => p.Name), Has.None.Contains("e_score_correction_bias"));
        Assert.That(state.Keys.Where(k => k.Contains("embed_tokens")), Is.EqualTo(new[] { "model.embed_tokens.weight" }));
    }

    [Test]
    public void LoadsBf16AndConvertsDtype()
    {
        string dir = TestUtil.Tiny(dtype: DType.BF16);
        using var model = DeepSeekV3Model.Load(dir, CPU, ScalarType.BFloat16);
        Assert.That(model.StateDict()["lm_head.weight"].dtype, Is.EqualTo(ScalarType.BFloat16));
        Assert.That(model.StateDict()["model.layers.2.mlp.gate.e_score_correction_bias"].dtype, Is.EqualTo(ScalarType.Float32));
        using var f32 = DeepSeekV3Model.Load(dir, CPU, ScalarType.Float32);
        Assert.That(TestUtil.F(f32.StateDict()["lm_head.weight"]), Is.EqualTo(TestUtil.F(model.StateDict()["lm_head.weight"])));
    }

    [Test]
    public void MissingTensorIsNamed()
    {
        string bad = TestUtil.Rewrite(TestUtil.Tiny(), l => l.Where(t => t.Spec.Name != "mtp.layers.0.hnorm.weight").ToList());
        var e = Assert.Throws<ModelLoadException>(() => DeepSeekV3Model.Load(bad, CPU, ScalarType.Float32))!;
        Assert.That(e.Message, Does.Contain("mtp.layers.0.hnorm.weight"));
        Assert.That(e.Missing, Is.EqualTo(new[] { "mtp.layers.0.hnorm.weight" }));
    }

    [Test]
    public void ExtraTensorIsNamed()
    {
        string bad = TestUtil.Rewrite(TestUtil.Tiny(), l => l.Append((new TensorSpec("model.layers.9.extra.weight", DType.F32, new long[] { 2 }), new byte[8])).ToList());
        var e = Assert.Throws<ModelLoadException>(() => DeepSeekV3Model.Load(bad, CPU, ScalarType.Float32))!;
        Assert.That(e.Message, Does.Contain("model.layers.9.extra.weight"));
        Assert.That(e.Unexpected, Is.EqualTo(new[] { "model.layers.9.extra.weight" }));
    }

    [Test]
    public void WrongShapeIsNamed()
    {
        // Same element count, different shape: a broadcasting/reshaping loader would accept it.
        string bad = TestUtil.Rewrite(TestUtil.Tiny(), l => l.Select(t => t.Spec.Name == "mtp.layers.0.eh_proj.weight"
            ? (t.Spec with { Shape = new long[] { 128, 64 } }, t.Data) : t).ToList());
        var e = Assert.Throws<ModelLoadException>(() => DeepSeekV3Model.Load(bad, CPU, ScalarType.Float32))!;
        Assert.That(e.Message, Does.Contain("mtp.layers.0.eh_proj.weight"));
        Assert.That(e.Mismatched.Single(), Does.Contain("[128, 64]").And.Contain("[64, 128]"));
    }

    [Test]
    public void AllProblemsInOneMessage()
    {
        string bad = TestUtil.Rewrite(TestUtil.Tiny(), l => l
            .Where(t => t.Spec.Name != "lm_head.weight")
            .Select(t => t.Spec.Name == "model.norm.weight" ? (t.Spec with { Shape = new long[] { 1, 64 } }, t.Data) : t)
            .Append((new TensorSpec("bogus", DType.F32, new long[] { 1 }), new byte[4])).ToList());
        var e = Assert.Throws<ModelLoadException>(() => DeepSeekV3Model.Load(bad, CPU, ScalarType.Float32))!;
        Assert.That(e.Message, Does.Contain("lm_head.weight").And.Contain("model.norm.weight").And.Contain("bogus"));
    }

    [Test]
    public void OptionalPerDepthCopiesLoadAsOwnParameters()
    {
        string dir = Mtp.Tests.Shared.RepoPaths.NewTempDir("own-copies");
        RandomCheckpoint.Write(dir, RandomCheckpoint.TinyConfig(1), 3, ownDepthCopies: true);
        using var model = DeepSeekV3Model.Load(dir, CPU, ScalarType.Float32);
        Assert.That(model.StateDict().Keys, Does.Contain("mtp.layers.0.embed_tokens.weight").And.Contain("mtp.layers.0.shared_head.head.weight"));
    }

    [Test]
    public void ShardedCheckpointLoads()
    {
        string dir = Mtp.Tests.Shared.RepoPaths.NewTempDir("sharded");
        RandomCheckpoint.Write(dir, RandomCheckpoint.TinyConfig(2), 4, DType.BF16, maxShardBytes: 200_000);
        Assert.That(File.Exists(Path.Combine(dir, ShardIndex.FileName)));
        using var model = DeepSeekV3Model.Load(dir, CPU, ScalarType.Float32);
        Assert.That(model.MtpDepths, Has.Count.EqualTo(2));
    }

    [Test]
    public void RejectsQuantizedConfigAndUnknownRope()
    {
        var cfg = RandomCheckpoint.TinyConfig();
        cfg["quantization_config"] = new System.Text.Json.Nodes.JsonObject { ["quant_method"] = "fp8" };
        Assert.Throws<ModelConfigException>(() => DeepSeekV3Config.FromJson(cfg));
        cfg = RandomCheckpoint.TinyConfig();
        cfg["rope_scaling"] = new System.Text.Json.Nodes.JsonObject { ["type"] = "dynamic", ["factor"] = 2.0 };
        Assert.That(Assert.Throws<ModelConfigException>(() => DeepSeekV3Config.FromJson(cfg))!.Message, Does.Contain("dynamic"));
    }
}
