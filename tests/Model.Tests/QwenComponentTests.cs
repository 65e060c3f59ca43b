using Mtp.Model.Qwen;
using TorchSharp;
using static TorchSharp.torch;

namespace Mtp.Model.Tests;

public class QwenComponentTests
{
    static double[] D(Tensor t) => t.detach().to(ScalarType.Float64).cpu().contiguous().data<double>().ToArray();

    [Test]
    public void ZeroCenteredNormScalesByOnePlusWeight()
    {
        using var scope = NewDisposeScope();
        using var norm = new ZeroCenteredRmsNorm(4, 1e-6, ScalarType.Float32, CPU);
        using (no_grad()) norm.Weight.copy_(tensor(new float[] { 0f, 0.5f, -1f, 2f }));
        var x = tensor(new float[] { 1, -2, 3, 4 }).view(1, 4);
        double rms = Math.Sqrt((1 + 4 + 9 + 16) / 4.0 + 1e-6);
        var expected = new[] { 1 / rms * 1, -2 / rms * 1.5, 3 / rms * 0, 4 / rms * 3 };
        Assert.That(D(norm.forward(x)), Is.EqualTo(expected).Within(1e-6));
    }

    [Test]
    public void QueryAndGateAreInterleavedPerHead()
    {
        using var scope = NewDisposeScope();
        const int heads = 3, hd = 4;
        var qg = HeldScalars.Arange(heads * 2 * hd, CPU).to(ScalarType.Float32).view(1, 1, heads * 2 * hd);
        var (q, gate) = QwenAttention.SplitQueryGate(qg, heads, hd);
        Assert.That(q.shape, Is.EqualTo(new long[] { 1, 1, heads, hd }));
        Assert.That(gate.shape, Is.EqualTo(new long[] { 1, 1, heads * hd }));
        var qe = new List<double>();
        var ge = new List<double>();
        for (int h = 0; h < heads; h++)
            for (int j = 0; j < hd; j++) { qe.Add(h * 2 * hd + j); ge.Add(h * 2 * hd + hd + j); }
        Assert.That(D(q), Is.EqualTo(qe));
        Assert.That(D(gate), Is.EqualTo(ge));
    }

    [Test]
    public void PartialRopeRotatesHalvesOfTheFirstDimsOnly()
    {
        using var scope = NewDisposeScope();
        const int hd = 16, rd = 4;
        const double theta = 1e7;
        manual_seed(3);
        var x = randn(1, 2, 3, hd);
        var (cos, sin) = QwenRope.CosSin(rd, theta, tensor(new long[] { 0, 1, 5 }).view(1, 3));
        var y = D(Rope.ApplyPartial(x, cos, sin));
        var xs = D(x);
        long[] pos = { 0, 1, 5 };
        for (int h = 0; h < 2; h++)
            for (int s = 0; s < 3; s++)
            {
                int o = (h * 3 + s) * hd;
                for (int i = 0; i < rd / 2; i++)
                {
                    double ang = pos[s] * Math.Pow(theta, -2.0 * i / rd);
                    double a = xs[o + i], b = xs[o + i + rd / 2];
                    Assert.That(y[o + i], Is.EqualTo(a * Math.Cos(ang) - b * Math.Sin(ang)).Within(1e-5));
                    Assert.That(y[o + i + rd / 2], Is.EqualTo(b * Math.Cos(ang) + a * Math.Sin(ang)).Within(1e-5));
                }
                for (int i = rd; i < hd; i++) Assert.That(y[o + i], Is.EqualTo(xs[o + i]));
            }
    }

    [Test]
    public void RouterIsSoftmaxTopKRenormalised()
    {
        using var scope = NewDisposeScope();
        var logits = tensor(new float[] { 1, 3, 2, 0 }).view(1, 4);
        var (idx, w) = QwenMoe.Route(logits, 2, normalize: true);
        Assert.That(idx.data<long>().ToArray(), Is.EqualTo(new long[] { 1, 2 }));
        double e3 = Math.Exp(3), e2 = Math.Exp(2);
        Assert.That(D(w), Is.EqualTo(new[] { e3 / (e3 + e2), e2 / (e3 + e2) }).Within(1e-6));
        var (_, raw) = QwenMoe.Route(logits, 2, normalize: false);
        double z = Math.Exp(1) + e3 + e2 + 1;
        Assert.That(D(raw), Is.EqualTo(new[] { e3 / z, e2 / z }).Within(1e-6));
    }

    /// <summary>
    /// The whole linear-attention mixer against a direct per-step computation in doubles: projections, causal
    /// depthwise conv + SiLU, L2 norms, beta, g, the delta rule, gated norm, out_proj.
    /// </summary>
    [TestCase(DeltaRuleMode.Recurrent)]
    [TestCase(DeltaRuleMode.Chunked)]
    public void GatedDeltaNetMatchesADirectPerStepComputation(DeltaRuleMode mode)
    {
        using var scope = NewDisposeScope();
        var cfg = QwenConfig.Load(QwenTestUtil.Native("qwen3.5-moe"));
        using var net = new GatedDeltaNet(cfg, ScalarType.Float32, CPU);
        manual_seed(11);
        var p = new Dictionary<string, double[]>();
        using (no_grad())
            foreach (var (name, param) in net.named_parameters())
            {
                var r = name is "A_log" or "dt_bias" ? rand(param.shape).Times(2L).Minus(1) : randn(param.shape).Times(0.4);
                param.copy_(r);
                p[name] = D(param);
            }
        const int L = 7;
        int H = cfg.HiddenSize, nk = cfg.LinearNumKeyHeads, nv = cfg.LinearNumValueHeads, dk = cfg.LinearKeyHeadDim, dv = cfg.LinearValueHeadDim, K = cfg.LinearConvKernelDim;
        int C = cfg.ConvDim, kd = cfg.LinearKeyDim;
        var x = randn(1, L, H);
        var got = D(net.Mix(x, mode, chunkSize: 3));
        var xs = D(x);

        double[] Lin(string w, int outF, int t) // W [outF, H] · x_t
        {
            var r = new double[outF];
            for (int o = 0; o < outF; o++) for (int i = 0; i < H; i++) r[o] += p[w][o * H + i] * xs[t * H + i];
            return r;
        }
        static double Silu(double v) => v / (1 + Math.Exp(-v));
        var qkv = Enumerable.Range(0, L).Select(t => Lin("in_proj_qkv.weight", C, t)).ToArray();
        var state = new double[nv, dk, dv];
        var expected = new double[L * H];
        for (int t = 0; t < L; t++)
        {
            var c = new double[C];
            for (int ch = 0; ch < C; ch++)
            {
                double s = 0;
                for (int j = 0; j < K; j++)
                {
                    int src = t + j - (K - 1);
                    if (src >= 0) s += p["conv1d.weight"][ch * K + j] * qkv[src][ch];
                }
                c[ch] = Silu(s);
            }
            var z = Lin("in_proj_z.weight", nv * dv, t);
            var b = Lin("in_proj_b.weight", nv, t);
            var a = Lin("in_proj_a.weight", nv, t);
            var y = new double[nv * dv];
            for (int hv = 0; hv < nv; hv++)
            {
                int hk = hv / (nv / nk);
                var q = Enumerable.Range(0, dk).Select(i => c[hk * dk + i]).ToArray();
                var k = Enumerable.Range(0, dk).Select(i => c[kd + hk * dk + i]).ToArray();
                var v = Enumerable.Range(0, dv).Select(i => c[2 * kd + hv * dv + i]).ToArray();
                double qn = Math.Sqrt(q.Sum(e => e * e) + 1e-6), kn = Math.Sqrt(k.Sum(e => e * e) + 1e-6);
                for (int i = 0; i < dk; i++) { q[i] = q[i] / qn / Math.Sqrt(dk); k[i] /= kn; }
                double beta = 1 / (1 + Math.Exp(-b[hv]));
                double g = -Math.Exp(p["A_log"][hv]) * Math.Log(1 + Math.Exp(a[hv] + p["dt_bias"][hv]));
                for (int i = 0; i < dk; i++) for (int j = 0; j < dv; j++) state[hv, i, j] *= Math.Exp(g);
                for (int j = 0; j < dv; j++)
                {
                    double mem = 0;
                    for (int i = 0; i < dk; i++) mem += state[hv, i, j] * k[i];
                    double delta = beta * (v[j] - mem);
                    for (int i = 0; i < dk; i++) state[hv, i, j] += k[i] * delta;
                }
                var o = new double[dv];
                for (int j = 0; j < dv; j++) for (int i = 0; i < dk; i++) o[j] += state[hv, i, j] * q[i];
                double rms = Math.Sqrt(o.Sum(e => e * e) / dv + cfg.RmsNormEps);
                for (int j = 0; j < dv; j++) y[hv * dv + j] = p["norm.weight"][j] * o[j] / rms * Silu(z[hv * dv + j]);
            }
            for (int oIdx = 0; oIdx < H; oIdx++)
                for (int i = 0; i < nv * dv; i++) expected[t * H + oIdx] += p["out_proj.weight"][oIdx * nv * dv + i] * y[i];
        }
        Assert.That(got, Is.EqualTo(expected).Within(2e-4));
    }

    [Test]
    public void ChunkedDeltaRuleEqualsRecurrentWithGradients()
    {
        using var scope = NewDisposeScope();
        manual_seed(5);
        Tensor Leaf(Tensor t) => t.detach().requires_grad_(true);
        var q = Leaf(randn(2, 11, 3, 5));
        var k = Leaf(randn(2, 11, 3, 5));
        var v = Leaf(randn(2, 11, 3, 6));
        var g = Leaf((-rand(2, 11, 3)).Times(2L));
        var beta = Leaf(rand(2, 11, 3));
        var w = randn(2, 11, 3, 6);
        var inputs = new[] { q, k, v, g, beta };
        (double[] Out, double[][] Grads) Run(Func<Tensor> f)
        {
            foreach (var t in inputs) t.grad?.zero_();
            var o = f();
            (o * w).sum().backward();
            return (D(o), inputs.Select(t => D(t.grad!)).ToArray());
        }
        var rec = Run(() => DeltaRule.Recurrent(q, k, v, g, beta));
        foreach (int chunk in new[] { 1, 4, 11, 64 })
        {
            var ch = Run(() => DeltaRule.Chunked(q, k, v, g, beta, chunk));
            Assert.That(ch.Out, Is.EqualTo(rec.Out).Within(1e-5), $"chunk {chunk}");
            for (int i = 0; i < inputs.Length; i++) Assert.That(ch.Grads[i], Is.EqualTo(rec.Grads[i]).Within(1e-4), $"chunk {chunk} grad {i}");
        }
    }

    static double[][] Outputs(QwenModel m, PackedBatch batch)
    {
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        var o = m.Forward(batch);
        return new[] { D(o.MainLogits) }.Concat(o.MtpLogits.Select(D)).ToArray();
    }

    [Test]
    public void ModelLogitsAreTheSameChunkedAndRecurrent()
    {
        using var m = QwenTestUtil.Load("qwen3.5-moe");
        using var batch = TestUtil.RandomBatch(2, 23, new long[] { 0, 9, 23, 46 }, 256, 4);
        m.ChunkSize = 8;
        var chunked = Outputs(m, batch);
        m.DeltaRuleMode = DeltaRuleMode.Recurrent;
        var rec = Outputs(m, batch);
        for (int i = 0; i < rec.Length; i++) Assert.That(chunked[i], Is.EqualTo(rec[i]).Within(1e-4));
    }

    /// <summary>Packed sequences see nothing of each other: convolution, recurrence, attention and positions all reset.</summary>
    [TestCase(DeltaRuleMode.Recurrent)]
    [TestCase(DeltaRuleMode.Chunked)]
    public void PackedSequencesEqualSeparateRuns(DeltaRuleMode mode)
    {
        using var m = QwenTestUtil.Load("qwen3.5-moe", mode);
        m.ChunkSize = 4;
        var rng = new Random(9);
        var a = Enumerable.Range(0, 6).Select(_ => (long)rng.Next(256)).ToArray();
        var b = Enumerable.Range(0, 10).Select(_ => (long)rng.Next(256)).ToArray();
        long[,] Row(long[] s) { var r = new long[1, s.Length]; for (int i = 0; i < s.Length; i++) r[0, i] = s[i]; return r; }
        using var packed = TestUtil.Batch(Row(a.Concat(b).ToArray()), new long[] { 0, 6, 16 });
        using var ba = TestUtil.Batch(Row(a), new long[] { 0, 6 });
        using var bb = TestUtil.Batch(Row(b), new long[] { 0, 10 });
        var p = Outputs(m, packed);
        var sa = Outputs(m, ba);
        var sb = Outputs(m, bb);
        for (int i = 0; i < p.Length; i++)
            Assert.That(p[i], Is.EqualTo(sa[i].Concat(sb[i]).ToArray()).Within(2e-5), $"output {i}");
        // Control: as one unbroken sequence, the second part does see the first (the comparison above can fail).
        using var joined = TestUtil.Batch(Row(a.Concat(b).ToArray()), new long[] { 0, 16 });
        var j = Outputs(m, joined)[0];
        long tail = sb[0].Length;
        Assert.That(j.Skip(j.Length - (int)tail).ToArray(), Is.Not.EqualTo(sb[0]).Within(1e-3));
    }
}
