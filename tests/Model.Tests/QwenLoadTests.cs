using Mtp.Model.Qwen;
using Mtp.SafeTensors;
using TorchSharp;
using static TorchSharp.torch;

namespace Mtp.Model.Tests;

public class QwenLoadTests
{
    [TestCase("qwen3.5-moe")]
    [TestCase("qwen3.5-moe-fp8")]
    public void FixtureConvertsAndLoadsStrictly(string fixture)
    {
        string dir = QwenTestUtil.Native(fixture);
        using var model = (QwenModel)MtpModel.Load(dir, CPU, ScalarType.Float32);
        Assert.That(model.Family, Is.EqualTo("qwen3.5"));
        Assert.That(model.MtpDepthCount, Is.EqualTo(1));
        Assert.That(model.NumHiddenLayers, Is.EqualTo(4));
        var state = model.StateDict();
        using var ck = Checkpoint.Open(dir);
        var names = ck.Tensors.Select(t => t.Name).ToList();
        var visual = names.Where(n => n.StartsWith("model.visual.", StringComparison.Ordinal)).OrderBy(n => n, StringComparer.Ordinal).ToList();
        Assert.That(model.IgnoredTensors.OrderBy(n => n, StringComparer.Ordinal), Is.EqualTo(visual));
        Assert.That(state.Keys.OrderBy(k => k, StringComparer.Ordinal), Is.EqualTo(names.Except(visual).OrderBy(k => k, StringComparer.Ordinal)));
        foreach (var loc in ck.Tensors.Where(t => state.ContainsKey(t.Name)))
            Assert.That(TestUtil.F(state[loc.Name]), Is.EqualTo(CheckpointIO.ReadFloat(loc.File.GetBytes(loc.Info), loc.Info)), loc.Name);
        foreach (var n in new[]
        {
            "model.embed_tokens.weight", "model.norm.weight", "lm_head.weight",
            "model.layers.0.linear_attn.in_proj_qkv.weight", "model.layers.0.linear_attn.in_proj_z.weight",
            "model.layers.0.linear_attn.in_proj_b.weight", "model.layers.0.linear_attn.in_proj_a.weight",
            "model.layers.0.linear_attn.conv1d.weight", "model.layers.0.linear_attn.A_log", "model.layers.0.linear_attn.dt_bias",
            "model.layers.0.linear_attn.norm.weight", "model.layers.0.linear_attn.out_proj.weight",
            "model.layers.3.self_attn.q_proj.weight", "model.layers.3.self_attn.q_norm.weight", "model.layers.3.self_attn.k_norm.weight",
            "model.layers.1.mlp.gate.weight", "model.layers.1.mlp.experts.gate_up_proj", "model.layers.1.mlp.experts.down_proj",
            "model.layers.1.mlp.shared_expert.gate_proj.weight", "model.layers.1.mlp.shared_expert_gate.weight",
            "mtp.layers.0.eh_proj.weight", "mtp.layers.0.enorm.weight", "mtp.layers.0.hnorm.weight", "mtp.layers.0.final_layernorm.weight",
            "mtp.layers.0.self_attn.o_proj.weight", "mtp.layers.0.mlp.experts.gate_up_proj",
        })
            Assert.That(state.Keys, Does.Contain(n));
        Assert.That(state["model.layers.3.self_attn.q_proj.weight"].shape, Is.EqualTo(new long[] { 160, 32 }));
        Assert.That(state["model.layers.0.linear_attn.conv1d.weight"].shape, Is.EqualTo(new long[] { 64, 1, 4 }));
        Assert.That(state["mtp.layers.0.mlp.experts.gate_up_proj"].shape, Is.EqualTo(new long[] { 4, 32, 32 }));
        Assert.That(state["mtp.layers.0.eh_proj.weight"].shape, Is.EqualTo(new long[] { 32, 64 }));
        Assert.That(model.Body.Layers.Select(l => l.IsFullAttention), Is.EqualTo(new[] { false, false, false, true }));
    }

    [Test]
    public void Bf16LoadKeepsALogInFloat32()
    {
        using var model = QwenModel.Load(QwenTestUtil.Native("qwen3.5-moe"), CPU, ScalarType.BFloat16);
        Assert.That(model.StateDict()["model.layers.0.linear_attn.A_log"].dtype, Is.EqualTo(ScalarType.Float32));
        Assert.That(model.StateDict()["model.layers.0.linear_attn.dt_bias"].dtype, Is.EqualTo(ScalarType.BFloat16));
        Assert.That(model.KeepsFloat32("model.layers.0.linear_attn.A_log"));
        using var scope = NewDisposeScope();
        using var batch = new SyntheticTokenSource(256, 1).Next(1, 16);
        var loss = model.Loss(batch, 0.1);
        Assert.That(double.IsFinite(loss.Total.item<float>()));
    }

    [Test]
    public void MissingAndUnexpectedTensorsAreNamed()
    {
        string bad = TestUtil.Rewrite(QwenTestUtil.Native("qwen3.5-moe"), l => l
            .Where(t => t.Spec.Name != "mtp.layers.0.hnorm.weight")
            .Append((new TensorSpec("model.layers.0.linear_attn.extra", DType.F32, new long[] { 2 }), new byte[8])).ToList());
        var e = Assert.Throws<ModelLoadException>(() => QwenModel.Load(bad, CPU, ScalarType.Float32))!;
        Assert.That(e.Missing, Is.EqualTo(new[] { "mtp.layers.0.hnorm.weight" }));
        Assert.That(e.Unexpected, Is.EqualTo(new[] { "model.layers.0.linear_attn.extra" }));
    }
}
