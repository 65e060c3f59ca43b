using TorchSharp;
using static TorchSharp.torch;

namespace Mtp.Model.Tests;

public class DeepSeekV4AttentionTests
{
    /// <summary>Sliding-window layer end to end against per-(query, head) loops: low-rank q, per-head RMS, partial rope, sink, inverse rope, grouped output.</summary>
    [Test]
    public void SlidingWindowAttentionMatchesADirectComputation()
    {
        var j = (System.Text.Json.Nodes.JsonObject)System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(Path.Combine(Mtp.Tests.Shared.RepoPaths.Fixtures, "deepseek-v4-flash", "config.json")))!;
        j.Remove("quantization_config");
        j["hidden_size"] = 8; j["head_dim"] = 8; j["qk_rope_head_dim"] = 4; j["q_lora_rank"] = 8; j["sliding_window"] = 3; j["o_lora_rank"] = 4;
        var c = DeepSeekV4Config.FromJson(j);                                // 2 heads, 2 groups
        var attn = new V4Attention(c, 0, ScalarType.Float32, CPU);
        var g = new Generator(41);
        using (no_grad()) foreach (var (_, p) in attn.named_parameters()) p.copy_(randn(p.shape, generator: g).Times(0.5));
        long[] cu = { 0, 7, 10 };
        var x = randn(new long[] { 1, 10, 8 }, generator: g);
        using var ctx = new V4Context(c, cu, 1, 10, tensor(Packing.Positions(cu)).view(1, 10), CPU);
        var got = TestUtil.F(attn.Forward(x, ctx));
        var P = attn.named_parameters().ToDictionary(kv => kv.name, kv => TestUtil.F(kv.parameter));
        var X = TestUtil.F(x);
        double[] Lin(float[] w, double[] v, int outN) { var r = new double[outN]; for (int o = 0; o < outN; o++) for (int k = 0; k < v.Length; k++) r[o] += w[o * v.Length + k] * v[k]; return r; }
        double[] Rms(double[] v, float[]? w) { double ms = v.Sum(a => a * a) / v.Length; return v.Select((a, i) => a / Math.Sqrt(ms + 1e-6) * (w?[i] ?? 1)).ToArray(); }
        var inv = V4Rope.InverseFrequencies(4, c.RopeTheta, null);
        double[] Rope(double[] v, int pos, int sign) { var r = (double[])v.Clone(); for (int i = 0; i < 2; i++) { double a = v[4 + 2 * i], b = v[5 + 2 * i], ang = sign * pos * inv[i]; r[4 + 2 * i] = a * Math.Cos(ang) - b * Math.Sin(ang); r[5 + 2 * i] = a * Math.Sin(ang) + b * Math.Cos(ang); } return r; }
        var pos = Packing.Positions(cu); var seg = Packing.SegmentIds(cu);
        var kv = new double[10][]; var q = new double[10][][];
        for (int t = 0; t < 10; t++)
        {
            var xt = X.Skip(t * 8).Take(8).Select(v => (double)v).ToArray();
            var qb = Lin(P["q_b_proj.weight"], Rms(Lin(P["q_a_proj.weight"], xt, 8), P["q_a_norm.weight"]), 16);
            q[t] = new[] { Rope(Rms(qb.Take(8).ToArray(), null), (int)pos[t], 1), Rope(Rms(qb.Skip(8).ToArray(), null), (int)pos[t], 1) };
            kv[t] = Rope(Rms(Lin(P["kv_proj.weight"], xt, 8), P["kv_norm.weight"]), (int)pos[t], 1);
        }
        for (int t = 0; t < 10; t++)
        {
            var o = new double[16];
            for (int h = 0; h < 2; h++)
            {
                var keys = Enumerable.Range(0, 10).Where(s => seg[s] == seg[t] && s <= t && t - s < 3).ToList();
                var sc = keys.Select(s => q[t][h].Zip(kv[s], (a, b) => a * b).Sum() / Math.Sqrt(8)).ToArray();
                double den = sc.Sum(Math.Exp) + Math.Exp(P["sinks"][h]);
                var oh = new double[8];
                for (int k = 0; k < keys.Count; k++) for (int d = 0; d < 8; d++) oh[d] += Math.Exp(sc[k]) / den * kv[keys[k]][d];
                oh = Rope(oh, (int)pos[t], -1);
                Array.Copy(oh, 0, o, h * 8, 8);
            }
            var low = new double[8];
            for (int gr = 0; gr < 2; gr++)                                   // wo_a [G*r, nh*hd/G] per group
                for (int r = 0; r < 4; r++)
                    for (int d = 0; d < 8; d++) low[gr * 4 + r] += P["o_a_proj.weight"][(gr * 4 + r) * 8 + d] * o[gr * 8 + d];
            var y = Lin(P["o_b_proj.weight"], low, 8);
            for (int d = 0; d < 8; d++) Assert.That(got[t * 8 + d], Is.EqualTo(y[d]).Within(1e-4), $"token {t} dim {d}");
        }
    }
}
