using TorchSharp;
using static TorchSharp.torch;

namespace Mtp.Model.Tests;

public class ComponentTests
{
    static DeepSeekV3Config Cfg(int d = 1) => DeepSeekV3Config.FromJson(RandomCheckpoint.TinyConfig(d));

    [Test]
    public void RmsNormMatchesDirectComputation()
    {
        using var scope = NewDisposeScope();
        var norm = new RmsNorm(5, 1e-6, ScalarType.Float32, CPU);
        var w = new float[] { 0.5f, 1, 2, -1, 3 };
        using (no_grad()) norm.parameters().Single().copy_(tensor(w));
        var x = new float[] { 1, 2, 3, 4, 5, -1, 0, 2, 0.5f, 7 };
        var y = TestUtil.F(norm.forward(tensor(x).view(2, 5)));
        for (int r = 0; r < 2; r++)
        {
            double ms = 0;
            for (int i = 0; i < 5; i++) ms += x[r * 5 + i] * x[r * 5 + i];
            double inv = 1 / Math.Sqrt(ms / 5 + 1e-6);
            for (int i = 0; i < 5; i++) Assert.That(y[r * 5 + i], Is.EqualTo(w[i] * x[r * 5 + i] * inv).Within(1e-5));
        }
    }

    [Test]
    public void RopeRotatesAdjacentPairs()
    {
        using var scope = NewDisposeScope();
        var cfg = Cfg();
        var x = Enumerable.Range(1, 8).Select(i => (float)i).ToArray();
        var (cos, sin) = Rope.CosSin(cfg, tensor(new long[] { 3 }).view(1, 1));
        var y = TestUtil.F(Rope.Apply(tensor(x).view(1, 1, 1, 8), cos, sin, interleave: true));
        for (int i = 0; i < 4; i++)
        {
            double a = 3 * Math.Pow(10000, -2.0 * i / 8);
            Assert.That(y[2 * i], Is.EqualTo(x[2 * i] * Math.Cos(a) - x[2 * i + 1] * Math.Sin(a)).Within(1e-5));
            Assert.That(y[2 * i + 1], Is.EqualTo(x[2 * i] * Math.Sin(a) + x[2 * i + 1] * Math.Cos(a)).Within(1e-5));
        }
        var h = TestUtil.F(Rope.Apply(tensor(x).view(1, 1, 1, 8), cos, sin, interleave: false));
        double a0 = 3.0;
        Assert.That(h[0], Is.EqualTo(x[0] * Math.Cos(a0) - x[4] * Math.Sin(a0)).Within(1e-5));
        Assert.That(h[4], Is.EqualTo(x[0] * Math.Sin(a0) + x[4] * Math.Cos(a0)).Within(1e-5));
    }

    [Test]
    public void YarnMatchesDeepSeekV3Numbers()
    {
        var json = RandomCheckpoint.TinyConfig();
        json["qk_rope_head_dim"] = 64;
        json["qk_nope_head_dim"] = 128;
        json["rope_scaling"] = new System.Text.Json.Nodes.JsonObject
        {
            ["type"] = "yarn", ["factor"] = 40.0, ["original_max_position_embeddings"] = 4096,
            ["beta_fast"] = 32, ["beta_slow"] = 1, ["mscale"] = 1.0, ["mscale_all_dim"] = 1.0,
        };
        var cfg = DeepSeekV3Config.FromJson(json);
        var inv = Rope.InverseFrequencies(cfg);
        for (int i = 0; i <= 10; i++) Assert.That(inv[i], Is.EqualTo(Math.Pow(10000, -2.0 * i / 64)).Within(1e-12), $"dim {i} extrapolated");
        for (int i = 23; i < 32; i++) Assert.That(inv[i], Is.EqualTo(Math.Pow(10000, -2.0 * i / 64) / 40).Within(1e-12), $"dim {i} interpolated");
        double m = 0.1 * Math.Log(40) + 1;
        Assert.That(Rope.SoftmaxScale(cfg), Is.EqualTo(m * m / Math.Sqrt(192)).Within(1e-12));
        Assert.That(Rope.CosSinFactor(cfg), Is.EqualTo(1.0));
    }

    static MlaAttention RandomAttention(DeepSeekV3Config cfg, int seed)
    {
        var attn = new MlaAttention(cfg, ScalarType.Float32, CPU);
        var g = new Generator((ulong)seed);
        using (no_grad())
            foreach (var (name, p) in attn.named_parameters())
                if (!name.Contains("layernorm")) p.copy_(randn(p.shape, generator: g).Times(0.2));
        return attn;
    }

    [Test]
    public void AttentionDependsOnRelativePositionsOnlyAndRopeTouchesRopeDimsOnly()
    {
        using var scope = NewDisposeScope();
        var cfg = Cfg();
        var attn = RandomAttention(cfg, 5);
        var x = randn(new long[] { 1, 6, 64 }, generator: new Generator(9));
        long[] cu = { 0, 6 };
        var mask = Packing.AttentionMask(cu, 1, 6, CPU);
        AttentionContext Ctx(long offset)
        {
            var (c, s) = Rope.CosSin(cfg, HeldScalars.Arange(6, CPU).Plus(offset).view(1, 6));
            return new AttentionContext(mask, c, s);
        }
        var y0 = TestUtil.F(attn.forward(x, Ctx(0)));
        var y7 = TestUtil.F(attn.forward(x, Ctx(7)));
        for (int i = 0; i < y0.Length; i++) Assert.That(y7[i], Is.EqualTo(y0[i]).Within(1e-4));
        // Positions matter when the rope parts are live ...
        var (rc, rs) = Rope.CosSin(cfg, tensor(new long[] { 0, 5, 1, 9, 2, 3 }).view(1, 6));
        var yPerm = TestUtil.F(attn.forward(x, new AttentionContext(mask, rc, rs)));
        Assert.That(yPerm.Zip(y0).Max(p => Math.Abs(p.First - p.Second)), Is.GreaterThan(1e-4));
        // ... and stop mattering when the q/k rope rows are zero: no rope on the nope dims.
        var ps = attn.named_parameters().ToDictionary(p => p.name, p => p.parameter);
        using (no_grad())
        {
            for (int h = 0; h < cfg.NumAttentionHeads; h++)
                ps["q_b_proj.weight"].narrow(0, h * cfg.QkHeadDim + cfg.QkNopeHeadDim, cfg.QkRopeHeadDim).zero_();
            ps["kv_a_proj_with_mqa.weight"].narrow(0, cfg.KvLoraRank, cfg.QkRopeHeadDim).zero_();
        }
        var z0 = TestUtil.F(attn.forward(x, Ctx(0)));
        var zPerm = TestUtil.F(attn.forward(x, new AttentionContext(mask, rc, rs)));
        for (int i = 0; i < z0.Length; i++) Assert.That(zPerm[i], Is.EqualTo(z0[i]).Within(1e-5));
    }

    [Test]
    public void PackedMaskBlocksCrossSequenceAttention()
    {
        using var scope = NewDisposeScope();
        var m = TestUtil.F(Packing.AttentionMask(new long[] { 0, 2, 4 }, 1, 4, CPU).to(ScalarType.Float32));
        Assert.That(m, Is.EqualTo(new float[] { 1, 0, 0, 0, 1, 1, 0, 0, 0, 0, 1, 0, 0, 0, 1, 1 }));
        Assert.That(Packing.Positions(new long[] { 0, 3, 5, 8 }), Is.EqualTo(new long[] { 0, 1, 2, 0, 1, 0, 1, 2 }));
    }

    [Test]
    public void ChangingSequenceTwoDoesNotChangeSequenceOne()
    {
        using var scope = NewDisposeScope();
        using var model = DeepSeekV3Model.Load(TestUtil.Tiny(2), CPU, ScalarType.Float32);
        long[] cu = { 0, 5, 12 };
        var a = TestUtil.RandomBatch(1, 12, cu, 256, 1);
        var ids2 = a.InputIds.clone();
        ids2.narrow(1, 5, 7).copy_(randint(256, new long[] { 1, 7 }, generator: new Generator(4)));
        var b = new PackedBatch(ids2, Packing.NextTokenLabels(ids2, cu), cu);
        using var _ = no_grad();
        var oa = model.Forward(a);
        var ob = model.Forward(b);
        foreach (var (la, lb) in new[] { (oa.MainLogits, ob.MainLogits) }.Concat(oa.MtpLogits.Zip(ob.MtpLogits)))
        {
            Assert.That(TestUtil.F(la.narrow(1, 0, 5)), Is.EqualTo(TestUtil.F(lb.narrow(1, 0, 5))).Within(1e-5));
            Assert.That(TestUtil.F(la.narrow(1, 5, 7)).Zip(TestUtil.F(lb.narrow(1, 5, 7))).Max(p => Math.Abs(p.First - p.Second)), Is.GreaterThan(1e-4));
        }
    }

    [Test]
    public void PositionsRestartPerPackedSequence()
    {
        using var scope = NewDisposeScope();
        using var model = DeepSeekV3Model.Load(TestUtil.Tiny(1), CPU, ScalarType.Float32);
        // Sequence A = 5 tokens, alone at the start of row 0 and packed after 7 other tokens in row 1.
        long[] a = { 10, 20, 30, 40, 50 };
        var ids = new long[2, 12];
        for (int j = 0; j < 12; j++) { ids[0, j] = j < 5 ? a[j] : 100 + j; ids[1, j] = j < 7 ? 200 + j : a[j - 7]; }
        var batch = TestUtil.Batch(ids, new long[] { 0, 5, 12, 19, 24 });
        using var _ = no_grad();
        var o = model.Forward(batch);
        foreach (var l in new[] { o.MainLogits }.Concat(o.MtpLogits))
            Assert.That(TestUtil.F(l[1].narrow(0, 7, 5)), Is.EqualTo(TestUtil.F(l[0].narrow(0, 0, 5))).Within(1e-4));
    }

    [Test]
    public void RoutingBiasSelectsOnlyGroupLimitAndScaling()
    {
        using var scope = NewDisposeScope();
        var cfg = Cfg(); // 4 experts, 2 groups of 2, topk_group 1, top-2, scale 2.5, normalised
        var scores = tensor(new float[] { 0.9f, 0.1f, 0.6f, 0.5f }).view(1, 4);
        // No bias: group scores {1.0, 1.1} -> group 1 -> experts 2,3 (expert 0 has the best score but its group loses).
        var (i0, w0) = MoeGate.Route(scores, zeros(4), cfg);
        Assert.That(i0.data<long>().ToArray().OrderBy(v => v), Is.EqualTo(new long[] { 2, 3 }));
        var wByIdx = i0.data<long>().ToArray().Zip(TestUtil.F(w0)).ToDictionary(p => p.First, p => p.Second);
        Assert.That(wByIdx[2], Is.EqualTo(0.6 / 1.1 * 2.5).Within(1e-5));
        Assert.That(wByIdx[3], Is.EqualTo(0.5 / 1.1 * 2.5).Within(1e-5));
        // Bias +0.5 on expert 0: group 0 wins selection; weights are still the UNBIASED scores.
        var (i1, w1) = MoeGate.Route(scores, tensor(new float[] { 0.5f, 0, 0, 0 }), cfg);
        wByIdx = i1.data<long>().ToArray().Zip(TestUtil.F(w1)).ToDictionary(p => p.First, p => p.Second);
        Assert.That(wByIdx.Keys.OrderBy(v => v), Is.EqualTo(new long[] { 0, 1 }));
        Assert.That(wByIdx[0], Is.EqualTo(0.9 / 1.0 * 2.5).Within(1e-5));
        Assert.That(wByIdx[1], Is.EqualTo(0.1 / 1.0 * 2.5).Within(1e-5));
        // Without normalisation the raw scores are scaled.
        var (i2, w2) = MoeGate.Route(scores, zeros(4), cfg with { NormTopkProb = false, NGroup = 1, TopkGroup = 1 });
        wByIdx = i2.data<long>().ToArray().Zip(TestUtil.F(w2)).ToDictionary(p => p.First, p => p.Second);
        Assert.That(wByIdx.Keys.OrderBy(v => v), Is.EqualTo(new long[] { 0, 2 }));
        Assert.That(wByIdx[0], Is.EqualTo(0.9 * 2.5).Within(1e-5));
    }

    [Test]
    public void MoeBlockEqualsDirectSumOverChosenExperts()
    {
        using var scope = NewDisposeScope();
        var cfg = Cfg();
        var moe = new MoeBlock(cfg, ScalarType.Float32, CPU);
        var g = new Generator(11);
        var ps = moe.named_parameters().ToDictionary(p => p.name, p => p.parameter);
        using (no_grad())
        {
            foreach (var p in ps.Values) p.copy_(randn(p.shape, generator: g).Times(0.3));
            moe.Gate.Bias.copy_(tensor(new float[] { 0.3f, -0.2f, 0.1f, 0f }));
        }
        var x = randn(new long[] { 1, 5, 64 }, generator: g);
        var y = TestUtil.F(moe.forward(x));
        var xs = TestUtil.F(x);
        var (idx, w) = MoeGate.Route(nn.functional.linear(x.view(5, 64), ps["gate.weight"]).sigmoid(), moe.Gate.Bias, cfg);
        var gu = ps["experts.gate_up_proj"]; var down = ps["experts.down_proj"];
        var sg = ps["shared_experts.gate_proj.weight"]; var su = ps["shared_experts.up_proj.weight"]; var sd = ps["shared_experts.down_proj.weight"];
        for (int t = 0; t < 5; t++)
        {
            var xt = x.view(5, 64)[t];
            var expected = sd.matmul(nn.functional.silu(sg.matmul(xt)) * su.matmul(xt));
            for (int j = 0; j < 2; j++)
            {
                long e = idx[t, j].item<long>();
                var gate = gu[e].narrow(0, 0, 32).matmul(xt);
                var up = gu[e].narrow(0, 32, 32).matmul(xt);
                expected = expected.Plus(down[e].matmul(nn.functional.silu(gate) * up).Times(w[t, j].item<float>()));
            }
            var ex = TestUtil.F(expected);
            for (int h = 0; h < 64; h++) Assert.That(y[t * 64 + h], Is.EqualTo(ex[h]).Within(1e-4));
        }
    }
}
