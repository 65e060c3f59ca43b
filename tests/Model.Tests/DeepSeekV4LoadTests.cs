using Mtp.SafeTensors;
using TorchSharp;
using static TorchSharp.torch;

namespace Mtp.Model.Tests;

public class DeepSeekV4LoadTests
{
    [Test]
    public void FlashFixtureLoadsStrictlyThroughTheRegistry()
    {
        string dir = DeepSeekV4Util.Native();
        using var model = (DeepSeekV4Model)MtpModel.Load(dir, CPU, ScalarType.Float32);
        var state = model.StateDict();
        using var ck = Checkpoint.Open(dir);
        Assert.That(state.Keys.OrderBy(k => k, StringComparer.Ordinal), Is.EqualTo(ck.Tensors.Select(t => t.Name).OrderBy(k => k, StringComparer.Ordinal)));
        foreach (var loc in ck.Tensors.Where(t => t.Info.DType != DType.I32))
            Assert.That(TestUtil.F(state[loc.Name]), Is.EqualTo(CheckpointIO.ReadFloat(loc.File.GetBytes(loc.Info), loc.Info)), loc.Name);
        Assert.That(model.Family, Is.EqualTo("deepseek-v4"));
        Assert.That(model.MtpDepthCount, Is.EqualTo(1));
        var tid = state["model.layers.0.mlp.gate.tid2eid"];
        Assert.That(tid.dtype, Is.EqualTo(ScalarType.Int32));
        Assert.That(model.TrainableParameters().Select(p => p.Name), Has.None.Contains("tid2eid").And.None.EndsWith("gate.e_score_correction_bias"));
        Assert.That(state.Keys, Does.Contain("model.layers.1.self_attn.compressor.indexer.position_bias").And.Contain("model.layers.2.self_attn.compressor.gate_proj.weight")
            .And.Contain("mtp.layers.0.hc_head.hc_fn").And.Contain("mtp.layers.0.e_proj.weight"));
    }

    [Test]
    public void Bf16LoadKeepsMixingSinkApeAndBiasInFloat32()
    {
        using var model = DeepSeekV4Model.Load(DeepSeekV4Util.Native(), CPU, ScalarType.BFloat16);
        foreach (var (name, t) in model.StateDict())
        {
            var want = t.dtype == ScalarType.Int32 ? ScalarType.Int32 : model.KeepsFloat32(name) ? ScalarType.Float32 : ScalarType.BFloat16;
            Assert.That(t.dtype, Is.EqualTo(want), name);
        }
        Assert.That(model.KeepsFloat32("model.layers.1.attn_hc.fn") && model.KeepsFloat32("model.hc_head.hc_base") && model.KeepsFloat32("mtp.layers.0.self_attn.sinks")
            && model.KeepsFloat32("model.layers.1.self_attn.compressor.indexer.position_bias") && model.KeepsFloat32("model.layers.2.mlp.gate.e_score_correction_bias"));
        Assert.That(model.KeepsFloat32("model.layers.1.mlp.gate.weight") || model.KeepsFloat32("model.layers.1.self_attn.compressor.kv_proj.weight"), Is.False);
        using var batch = new SyntheticTokenSource(256, 2).Next(1, 24);
        using var scope = NewDisposeScope();
        var loss = model.Loss(batch, 0.1);
        Assert.That(double.IsFinite(loss.Total.item<float>()));
    }

    [Test]
    public void ForwardShapesAndFiniteLosses()
    {
        using var model = DeepSeekV4Model.Load(DeepSeekV4Util.Native(), CPU, ScalarType.Float32);
        using var batch = new SyntheticTokenSource(256, 1).Next(2, 40);
        using var scope = NewDisposeScope();
        var o = model.Forward(batch);
        Assert.That(o.MainLogits.shape, Is.EqualTo(new long[] { 2, 40, 256 }));
        Assert.That(o.MtpLogits.Single().shape, Is.EqualTo(new long[] { 2, 40, 256 }));
        var l = model.Loss(batch, 0.1);
        TestContext.Out.WriteLine($"main {l.Main.item<float>():F4} mtp {l.Mtp[0].item<float>():F4}");
        Assert.That(double.IsFinite(l.Main.item<float>()) && double.IsFinite(l.Mtp[0].item<float>()));
        Assert.That(l.Main.item<float>(), Is.GreaterThan(4.0f).And.LessThan(7.0f));
    }
}
