using System.Text.Json.Nodes;
using Mtp.Tests.Shared;
using TorchSharp;
using static TorchSharp.torch;

namespace Mtp.Model.Tests;

public class DeepSeekV4ComponentTests
{
    /// <summary>A tiny V4 config: H 8, head_dim 8, rope 4, index 2x8 top-2, hc 4.</summary>
    static DeepSeekV4Config Tiny(int topk = 2, int window = 3)
    {
        var j = (JsonObject)JsonNode.Parse(File.ReadAllText(Path.Combine(RepoPaths.Fixtures, "deepseek-v4-flash", "config.json")))!;
        j.Remove("quantization_config");
        j["hidden_size"] = 8; j["head_dim"] = 8; j["qk_rope_head_dim"] = 4; j["index_head_dim"] = 8; j["index_n_heads"] = 2;
        j["index_topk"] = topk; j["q_lora_rank"] = 8; j["hc_mult"] = 4; j["sliding_window"] = window; j["o_lora_rank"] = 4;
        return DeepSeekV4Config.FromJson(j);
    }

    static void Randomize(nn.Module m, int seed)
    {
        var g = new Generator((ulong)seed);
        using var _ = no_grad();
        foreach (var (_, p) in m.named_parameters()) p.copy_(randn(p.shape, generator: g).Times(0.5));
    }

    static float[,] M(Tensor t) { var f = TestUtil.F(t); long r = t.shape[0], c = t.shape[1]; var m = new float[r, c]; for (int i = 0; i < r; i++) for (int k = 0; k < c; k++) m[i, k] = f[i * c + k]; return m; }

    [Test]
    public void SinkhornMixingIsDoublyStochasticAndMatchesADirectComputation()
    {
        const int hc = 4, iters = 20;
        const double eps = 1e-6;
        var g = new Generator(3);
        var mixes = randn(new long[] { 6, (2 + hc) * hc }, generator: g).Times(0.5);
        var scale = tensor(new float[] { 0.7f, 1.3f, 1.0f });
        var bas = randn(new long[] { (2 + hc) * hc }, generator: g);
        var (pre, post, comb) = HyperConnection.Split(mixes, scale, bas, hc, iters, eps);
        Assert.That(comb.sum(-2).Minus(1).abs().max().item<float>(), Is.LessThan(1e-5f), "columns");
        Assert.That(comb.sum(-1).Minus(1).abs().max().item<float>(), Is.LessThan(1e-4f), "rows");
        Assert.That(comb.min().item<float>(), Is.GreaterThan(0f));
        Assert.That(post.min().item<float>() > 0 && post.max().item<float>() < 2 && pre.min().item<float>() > eps);
        // Direct computation of token 2.
        var m = TestUtil.F(mixes[2]);
        var b = TestUtil.F(bas);
        double Sig(double v) => 1 / (1 + Math.Exp(-v));
        var c = new double[hc, hc];
        for (int i = 0; i < hc; i++)
        {
            double mx = double.NegativeInfinity, sum = 0;
            for (int k = 0; k < hc; k++) mx = Math.Max(mx, m[2 * hc + i * hc + k] * 1.0 + b[2 * hc + i * hc + k]);
            for (int k = 0; k < hc; k++) sum += Math.Exp(m[2 * hc + i * hc + k] * 1.0 + b[2 * hc + i * hc + k] - mx);
            for (int k = 0; k < hc; k++) c[i, k] = Math.Exp(m[2 * hc + i * hc + k] * 1.0 + b[2 * hc + i * hc + k] - mx) / sum + eps;
        }
        void Cols() { for (int k = 0; k < hc; k++) { double s = 0; for (int i = 0; i < hc; i++) s += c[i, k]; for (int i = 0; i < hc; i++) c[i, k] /= s + eps; } }
        void Rows() { for (int i = 0; i < hc; i++) { double s = 0; for (int k = 0; k < hc; k++) s += c[i, k]; for (int k = 0; k < hc; k++) c[i, k] /= s + eps; } }
        Cols();
        for (int it = 0; it < iters - 1; it++) { Rows(); Cols(); }
        var got = TestUtil.F(comb[2]);
        for (int i = 0; i < hc; i++) for (int k = 0; k < hc; k++) Assert.That(got[i * hc + k], Is.EqualTo(c[i, k]).Within(1e-5));
        for (int i = 0; i < hc; i++)
        {
            Assert.That(TestUtil.F(pre[2])[i], Is.EqualTo(Sig(m[i] * 0.7 + b[i]) + eps).Within(1e-6));
            Assert.That(TestUtil.F(post[2])[i], Is.EqualTo(2 * Sig(m[hc + i] * 1.3 + b[hc + i])).Within(1e-6));
        }
    }

    [Test]
    public void HyperConnectionCollapseAndExpandMatchDirectSums()
    {
        var g = new Generator(5);
        var x = randn(new long[] { 1, 2, 3, 4 }, generator: g);         // [B, S, hc, H]
        var f = randn(new long[] { 1, 2, 4 }, generator: g);
        var pre = rand(new long[] { 1, 2, 3 }, generator: g);
        var post = rand(new long[] { 1, 2, 3 }, generator: g);
        var comb = rand(new long[] { 1, 2, 3, 3 }, generator: g);
        var y = HyperConnection.Collapse(x, pre);
        var z = HyperConnection.Expand(f, x, post, comb);
        var X = TestUtil.F(x); var F = TestUtil.F(f); var Pr = TestUtil.F(pre); var Po = TestUtil.F(post); var C = TestUtil.F(comb);
        for (int s = 0; s < 2; s++)
            for (int d = 0; d < 4; d++)
            {
                double acc = 0;
                for (int p = 0; p < 3; p++) acc += Pr[s * 3 + p] * X[(s * 3 + p) * 4 + d];
                Assert.That(TestUtil.F(y)[s * 4 + d], Is.EqualTo(acc).Within(1e-5));
                for (int q = 0; q < 3; q++)
                {
                    double o = Po[s * 3 + q] * F[s * 4 + d];
                    for (int p = 0; p < 3; p++) o += C[(s * 3 + p) * 3 + q] * X[(s * 3 + p) * 4 + d];
                    Assert.That(TestUtil.F(z)[(s * 3 + q) * 4 + d], Is.EqualTo(o).Within(1e-5));
                }
            }
    }

    [Test]
    public void AttentionSinkJoinsOnlyTheDenominator()
    {
        var scores = tensor(new float[] { 1f, 2f, float.NegativeInfinity, 0.5f, -1f, 3f }).view(1, 2, 1, 3);
        var sink = tensor(new float[] { 0.25f, -2f });
        var p = TestUtil.F(V4Attention.WithSink(scores, sink));
        var s = TestUtil.F(scores);
        float[] sk = { 0.25f, -2f };
        for (int h = 0; h < 2; h++)
        {
            double den = Math.Exp(sk[h]);
            for (int j = 0; j < 3; j++) den += Math.Exp(s[h * 3 + j]);
            for (int j = 0; j < 3; j++) Assert.That(p[h * 3 + j], Is.EqualTo(Math.Exp(s[h * 3 + j]) / den).Within(1e-6));
        }
        Assert.That(p[0] + p[1] + p[2], Is.LessThan(1f));
        var none = TestUtil.F(V4Attention.WithSink(scores, tensor(new float[] { -1e30f, -1e30f })));
        Assert.That(none, Is.EqualTo(TestUtil.F(scores.softmax(-1))).Within(1e-6));
    }

    [Test]
    public void SlidingWindowMaskIsCausalPerSequenceAndWindowed()
    {
        var c = Tiny(window: 3);
        long[] cu = { 0, 5, 12, 16, 24 };                                   // rows of 12
        using var ctx = new V4Context(c, cu, 2, 12, tensor(Packing.Positions(cu)).view(2, 12), CPU);
        var m = ctx.WindowMask.data<bool>().ToArray();
        var seg = Packing.SegmentIds(cu);
        for (int b = 0; b < 2; b++)
            for (int i = 0; i < 12; i++)
                for (int j = 0; j < 12; j++)
                    Assert.That(m[(b * 12 + i) * 12 + j], Is.EqualTo(seg[b * 12 + i] == seg[b * 12 + j] && j <= i && i - j < 3), $"{b},{i},{j}");
    }

    /// <summary>Direct compressor: per entry and channel, softmax over its slots of (score + ape), pool, RMSNorm, rope at g*r.</summary>
    static double[,] DirectCompress(float[,] x, float[,] wkv, float[,] wg, float[,] ape, float[] normW, int r, int d, int rd, double[] inv, List<(int Start, int G)> entries, double eps)
    {
        int s = x.GetLength(0), h = x.GetLength(1), coff = wkv.GetLength(0) / d;
        double Dot(float[,] w, int row, int t) { double a = 0; for (int k = 0; k < h; k++) a += w[row, k] * x[t, k]; return a; }
        var outp = new double[entries.Count, d];
        for (int e = 0; e < entries.Count; e++)
        {
            var (start, g) = entries[e];
            var slots = new List<(int T, int Off, int I)>();
            if (coff == 2 && g > 0) for (int i = 0; i < r; i++) slots.Add((start - r + i, 0, i));
            for (int i = 0; i < r; i++) slots.Add((start + i, coff == 2 ? d : 0, i));
            var pooled = new double[d];
            for (int ch = 0; ch < d; ch++)
            {
                var sc = slots.Select(sl => Dot(wg, sl.Off + ch, sl.T) + ape[sl.I, sl.Off + ch]).ToArray();
                double mx = sc.Max(), den = sc.Sum(v => Math.Exp(v - mx));
                for (int j = 0; j < slots.Count; j++) pooled[ch] += Math.Exp(sc[j] - mx) / den * Dot(wkv, slots[j].Off + ch, slots[j].T);
            }
            double ms = pooled.Sum(v => v * v) / d;
            for (int ch = 0; ch < d; ch++) pooled[ch] = pooled[ch] / Math.Sqrt(ms + eps) * normW[ch];
            for (int i = 0; i < rd / 2; i++)
            {
                double ang = g * r * inv[i], a = pooled[d - rd + 2 * i], b = pooled[d - rd + 2 * i + 1];
                pooled[d - rd + 2 * i] = a * Math.Cos(ang) - b * Math.Sin(ang);
                pooled[d - rd + 2 * i + 1] = a * Math.Sin(ang) + b * Math.Cos(ang);
            }
            for (int ch = 0; ch < d; ch++) outp[e, ch] = pooled[ch];
        }
        return outp;
    }

    [TestCase(4)]   // overlapping windows (coff 2)
    [TestCase(3)]   // plain windows
    public void CompressorMatchesADirectComputationOnPackedSequences(int r)
    {
        var c = Tiny();
        long[] cu = { 0, 9, 14 };                                          // one row: lengths 9 and 5
        var comp = new Compressor(c, r, 8, null, ScalarType.Float32, CPU);
        Randomize(comp, 11);
        var x = randn(new long[] { 1, 14, 8 }, generator: new Generator(12));
        using var ctx = new V4Context(c, cu, 1, 14, tensor(Packing.Positions(cu)).view(1, 14), CPU);
        var (plan, cos, sin) = ctx.Plan(r);
        var entries = new List<(int, int)>();
        for (int sg = 0; sg < 2; sg++) for (int g = 0; g < (cu[sg + 1] - cu[sg]) / r; g++) entries.Add(((int)cu[sg] + g * r, g));
        Assert.That(plan!.Count, Is.EqualTo(entries.Count));
        var got = TestUtil.F(comp.Forward(x, plan, cos!, sin!));
        var p = comp.named_parameters().ToDictionary(kv => kv.name, kv => kv.parameter);
        var want = DirectCompress(M(x[0]), M(p["kv_proj.weight"]), M(p["gate_proj.weight"]), M(p["position_bias"]), TestUtil.F(p["kv_norm.weight"]), r, 8, 4,
            V4Rope.InverseFrequencies(4, c.CompressRopeTheta, c.Yarn), entries, c.RmsNormEps);
        for (int e = 0; e < entries.Count; e++)
            for (int ch = 0; ch < 8; ch++) Assert.That(got[e * 8 + ch], Is.EqualTo(want[e, ch]).Within(2e-4), $"entry {e} ch {ch}");
        // Visibility: query at in-sequence position q sees its own sequence's entries g < (q+1)/r.
        var vis = plan.Visible.data<bool>().ToArray();
        var pos = Packing.Positions(cu); var seg = Packing.SegmentIds(cu);
        for (int i = 0; i < 14; i++)
            for (int e = 0; e < entries.Count; e++)
            {
                var (start, g) = entries[e];
                Assert.That(vis[i * entries.Count + e], Is.EqualTo(seg[start] == seg[i] && g < (pos[i] + 1) / r), $"query {i} entry {e}");
            }
    }

    [Test]
    public void IndexerKeepsTheTopkVisibleEntriesByReluWeightedScores()
    {
        var c = Tiny(topk: 2);
        long[] cu = { 0, 24 };
        var idx = new Indexer(c, 4, ScalarType.Float32, CPU);
        Randomize(idx, 21);
        var g = new Generator(22);
        var x = randn(new long[] { 1, 24, 8 }, generator: g);
        var qr = randn(new long[] { 1, 24, 8 }, generator: g);
        using var ctx = new V4Context(c, cu, 1, 24, tensor(Packing.Positions(cu)).view(1, 24), CPU);
        var (plan, cosC, sinC) = ctx.Plan(4);
        var scores = idx.Scores(x, qr, ctx.CosCompress, ctx.SinCompress, plan!, cosC!, sinC!);
        var sel = idx.Select(x, qr, ctx.CosCompress, ctx.SinCompress, plan!, cosC!, sinC!).data<bool>().ToArray();
        // Direct scores: q_h = rope(q_b_proj qr), k_c = the indexer's compressed keys, w_h = weights_proj x / sqrt(d * heads).
        var p = idx.named_parameters().ToDictionary(kv => kv.name, kv => kv.parameter);
        var k = TestUtil.F(idx.Keys(x, plan!, cosC!, sinC!));
        var wq = M(p["q_b_proj.weight"]); var wp = M(p["scorer.weights_proj.weight"]); var X = M(x[0]); var Q = M(qr[0]);
        var inv = V4Rope.InverseFrequencies(4, c.CompressRopeTheta, c.Yarn);
        var S = TestUtil.F(scores);
        int n = (int)plan!.Count;
        Assert.That(n, Is.EqualTo(6));
        for (int i = 0; i < 24; i++)
        {
            var direct = new double[n];
            for (int e = 0; e < n; e++)
            {
                double acc = 0;
                for (int h = 0; h < 2; h++)
                {
                    var q = new double[8];
                    for (int dd = 0; dd < 8; dd++) for (int m = 0; m < 8; m++) q[dd] += wq[h * 8 + dd, m] * Q[i, m];
                    for (int t = 0; t < 2; t++)
                    {
                        double ang = i * inv[t], a = q[4 + 2 * t], b = q[5 + 2 * t];
                        q[4 + 2 * t] = a * Math.Cos(ang) - b * Math.Sin(ang); q[5 + 2 * t] = a * Math.Sin(ang) + b * Math.Cos(ang);
                    }
                    double dot = 0, w = 0;
                    for (int dd = 0; dd < 8; dd++) dot += q[dd] * k[e * 8 + dd];
                    for (int m = 0; m < 8; m++) w += wp[h, m] * X[i, m];
                    acc += Math.Max(dot, 0) * w / Math.Sqrt(8 * 2);
                }
                bool visible = e < (i + 1) / 4;
                direct[e] = visible ? acc : double.NegativeInfinity;
                if (visible) Assert.That(S[i * n + e], Is.EqualTo(acc).Within(1e-4), $"score {i},{e}");
                else Assert.That(float.IsNegativeInfinity(S[i * n + e]));
            }
            var want = direct.Select((v, e) => (v, e)).Where(t => !double.IsNegativeInfinity(t.v)).OrderByDescending(t => t.v).Take(2).Select(t => t.e).ToHashSet();
            for (int e = 0; e < n; e++) Assert.That(sel[i * n + e], Is.EqualTo(want.Contains(e)), $"select {i},{e}");
        }
    }

    [Test]
    public void HashLayersRouteByTokenIdAndScoredLayersUseTheBiasForSelectionOnly()
    {
        var c = Tiny();                                                    // 4 experts, top-2, sqrtsoftplus, scale 1.5
        var hash = new V4Gate(c, true, ScalarType.Float32, CPU);
        var scored = new V4Gate(c, false, ScalarType.Float32, CPU);
        Randomize(hash, 31); Randomize(scored, 31);
        using (no_grad())
        {
            var map = new int[c.VocabSize * 2];
            for (int v = 0; v < c.VocabSize; v++) { map[2 * v] = v % 4; map[2 * v + 1] = (v / 4) % 4 == v % 4 ? (v + 1) % 4 : (v / 4) % 4; }
            hash.get_buffer("tid2eid")!.copy_(tensor(map).view(c.VocabSize, 2));
            scored.get_buffer("e_score_correction_bias")!.copy_(tensor(new float[] { 0, 0, 0, 100 }));
        }
        var x = randn(new long[] { 5, 8 }, generator: new Generator(32));
        var ids = tensor(new long[] { 0, 7, 13, 200, 255 });
        var W = M(hash.named_parameters().Single().parameter);
        var X = M(x);
        double Score(int t, int e) { double l = 0; for (int k = 0; k < 8; k++) l += W[e, k] * X[t, k]; return Math.Sqrt(Math.Log(1 + Math.Exp(l))); }
        var (hi, hw) = hash.Route(x, ids);
        var I = hi.data<long>().ToArray(); var Wt = TestUtil.F(hw); var idv = ids.data<long>().ToArray();
        for (int t = 0; t < 5; t++)
        {
            long v = idv[t];
            long e0 = v % 4, e1 = (v / 4) % 4 == v % 4 ? (v + 1) % 4 : (v / 4) % 4;
            Assert.That(new[] { I[2 * t], I[2 * t + 1] }, Is.EqualTo(new[] { e0, e1 }));
            double s0 = Score(t, (int)e0), s1 = Score(t, (int)e1);
            Assert.That(Wt[2 * t], Is.EqualTo(1.5 * s0 / (s0 + s1)).Within(1e-5));
            Assert.That(Wt[2 * t + 1], Is.EqualTo(1.5 * s1 / (s0 + s1)).Within(1e-5));
        }
        var (si, sw) = scored.Route(x, ids);
        var SI = si.data<long>().ToArray(); var SW = TestUtil.F(sw);
        for (int t = 0; t < 5; t++)
        {
            Assert.That(SI[2 * t], Is.EqualTo(3), "the bias wins the selection");
            int other = Enumerable.Range(0, 3).OrderByDescending(e => Score(t, e)).First();
            Assert.That(SI[2 * t + 1], Is.EqualTo(other));
            double s3 = Score(t, 3), so = Score(t, other);
            Assert.That(SW[2 * t], Is.EqualTo(1.5 * s3 / (s3 + so)).Within(1e-5), "weights ignore the bias");
        }
    }

    [Test]
    public void SwigluClampsGateAboveAndUpOnBothSides()
    {
        var gate = tensor(new float[] { 20f, -20f, 5f, 0.3f });
        var up = tensor(new float[] { 30f, -30f, -4f, 11f });
        var got = TestUtil.F(V4Swiglu.Act(gate, up, 10));
        double Silu(double v) => v / (1 + Math.Exp(-v));
        double[] want = { Silu(10) * 10, Silu(-20) * -10, Silu(5) * -4, Silu(0.3) * 10 };
        for (int i = 0; i < 4; i++) Assert.That(got[i], Is.EqualTo(want[i]).Within(1e-4));
        var free = TestUtil.F(V4Swiglu.Act(gate, up, 0));
        Assert.That(free[0], Is.EqualTo(Silu(20) * 30).Within(1e-3));
    }
}
