using System.Text.Json.Nodes;
using Mtp.Adapters;
using Mtp.Tests.Shared;
using TorchSharp;
using static TorchSharp.torch;

namespace Mtp.Model.Tests;

/// <summary>
/// Issue 17 items 4-6: what the release code / transformers do where a config leaves room (sources in
/// src/Model/README.md). Every expected value below is written from those sources, not read from the code under test.
/// </summary>
public class ReleaseFidelityTests
{
    static JsonObject V4Json()
    {
        var j = (JsonObject)JsonNode.Parse(File.ReadAllText(Path.Combine(RepoPaths.Fixtures, "deepseek-v4-flash", "config.json")))!;
        j.Remove("quantization_config");
        return j;
    }

    // ---------------------------------------------------------------- item 4: q_a / kv_a layernorm eps

    [Test]
    public void LowRankNormsUseOneEMinus6WhateverRmsNormEpsSays()
    {
        using var scope = NewDisposeScope();
        var json = RandomCheckpoint.TinyConfig();
        json["rms_norm_eps"] = 0.5;
        var cfg = DeepSeekV3Config.FromJson(json);
        var attn = new MlaAttention(cfg, ScalarType.Float32, CPU);
        Assert.That(attn.QALayerNorm!.Eps, Is.EqualTo(1e-6));
        Assert.That(attn.KvALayerNorm.Eps, Is.EqualTo(1e-6));
        using (var body = new DeepSeekV3Body(cfg, ScalarType.Float32, CPU))
            Assert.That(body.Norm.Eps, Is.EqualTo(0.5), "the other norms keep rms_norm_eps");

        // The norm itself on a small-magnitude latent (where eps matters): x / sqrt(mean(x^2) + 1e-6).
        var x = new float[32];
        for (int i = 0; i < 32; i++) x[i] = 1e-3f * (i - 15.5f);
        var y = TestUtil.F(attn.KvALayerNorm.forward(tensor(x).view(1, 32)));
        double ms = x.Sum(v => (double)v * v) / 32;
        for (int i = 0; i < 32; i++) Assert.That(y[i], Is.EqualTo(x[i] / Math.Sqrt(ms + 1e-6)).Within(1e-5));

        // So attention output does not depend on rms_norm_eps (it has no other norm).
        var other = new MlaAttention(DeepSeekV3Config.FromJson(RandomCheckpoint.TinyConfig()), ScalarType.Float32, CPU);
        var g = new Generator(3);
        using (no_grad())
        {
            var dst = other.named_parameters().ToDictionary(p => p.name, p => p.parameter);
            foreach (var (name, p) in attn.named_parameters())
            {
                if (!name.Contains("layernorm")) p.copy_(randn(p.shape, generator: g).Times(0.05));
                dst[name].copy_(p);
            }
        }
        var h = randn(new long[] { 1, 5, 64 }, generator: g).Times(0.05);
        long[] cu = { 0, 5 };
        var (cos, sin) = Rope.CosSin(cfg, tensor(Packing.Positions(cu)).view(1, 5));
        var ctx = new AttentionContext(Packing.AttentionMask(cu, 1, 5, CPU), cos, sin);
        Assert.That(TestUtil.F(attn.forward(h, ctx)), Is.EqualTo(TestUtil.F(other.forward(h, ctx))).Within(1e-6));
    }

    // ---------------------------------------------------------------- item 5: YaRN mscale without mscale_all_dim

    static DeepSeekV3Config YarnConfig(JsonObject scaling)
    {
        var json = RandomCheckpoint.TinyConfig();
        scaling["type"] = "yarn"; scaling["factor"] = 40.0; scaling["original_max_position_embeddings"] = 4096;
        json["rope_scaling"] = scaling;
        return DeepSeekV3Config.FromJson(json);
    }

    [Test]
    public void YarnWithoutMscaleAllDimScalesCosSinByTheMscaleTermAndLeavesTheSoftmaxScale()
    {
        using var scope = NewDisposeScope();
        // DeepSeek's modeling_deepseek.py / vLLM: mscale(40, 0.707) / mscale(40, 0) = 0.1 * 0.707 * ln 40 + 1.
        var cfg = YarnConfig(new JsonObject { ["mscale"] = 0.707 });
        double want = 0.1 * 0.707 * Math.Log(40) + 1;
        Assert.That(Rope.CosSinFactor(cfg), Is.EqualTo(want).Within(1e-12));
        Assert.That(Rope.SoftmaxScale(cfg), Is.EqualTo(1 / Math.Sqrt(16 + 8)).Within(1e-12), "no mscale_all_dim: 1/sqrt(qk_head_dim)");
        var (cos, sin) = Rope.CosSin(cfg, tensor(new long[] { 5 }).view(1, 1));
        var inv = Rope.InverseFrequencies(cfg);
        var c = TestUtil.F(cos); var s = TestUtil.F(sin);
        for (int i = 0; i < inv.Length; i++)
        {
            Assert.That(c[i], Is.EqualTo(Math.Cos(5 * inv[i]) * want).Within(1e-5));
            Assert.That(s[i], Is.EqualTo(Math.Sin(5 * inv[i]) * want).Within(1e-5));
        }
        // Neither key: mscale 1 -> 0.1 ln 40 + 1 (here every implementation agrees).
        Assert.That(Rope.CosSinFactor(YarnConfig(new JsonObject())), Is.EqualTo(0.1 * Math.Log(40) + 1).Within(1e-12));
        // mscale_all_dim 0 written out is the same as missing.
        Assert.That(Rope.CosSinFactor(YarnConfig(new JsonObject { ["mscale"] = 0.707, ["mscale_all_dim"] = 0 })), Is.EqualTo(want).Within(1e-12));
    }

    // ---------------------------------------------------------------- item 6: V4 router, config defaults

    static (V4Gate Gate, Tensor X, double[,] Logits) RandomGate(DeepSeekV4Config c, ScalarType dtype, int n)
    {
        var gate = new V4Gate(c, false, dtype, CPU);
        var g = new Generator(41);
        var w = randn(new long[] { c.NRoutedExperts, c.HiddenSize }, generator: g);
        var x = randn(new long[] { n, c.HiddenSize }, generator: g);
        using (no_grad()) gate.named_parameters().Single().parameter.copy_(w);
        var xd = x.to(dtype);
        // Logits from the stored (dtype-rounded) values, in double.
        var W = TestUtil.F(w.to(dtype)); var X = TestUtil.F(xd);
        var logits = new double[n, c.NRoutedExperts];
        for (int t = 0; t < n; t++)
            for (int e = 0; e < c.NRoutedExperts; e++)
            {
                double l = 0;
                for (int k = 0; k < c.HiddenSize; k++) l += (double)W[e * c.HiddenSize + k] * X[t * c.HiddenSize + k];
                logits[t, e] = l;
            }
        return (gate, xd, logits);
    }

    [Test]
    public void V4RouterRenormalisesSqrtSoftplusScoresEvenWithNormTopkProbFalse()
    {
        using var scope = NewDisposeScope();
        var j = V4Json(); j["norm_topk_prob"] = false;
        var c = DeepSeekV4Config.FromJson(j);
        var (gate, x, logits) = RandomGate(c, ScalarType.Float32, 6);
        var (idx, w) = gate.Route(x, zeros(6, dtype: ScalarType.Int64));
        var I = idx.data<long>().ToArray(); var Wt = TestUtil.F(w);
        for (int t = 0; t < 6; t++)
        {
            double Score(long e) => Math.Sqrt(Math.Log(1 + Math.Exp(logits[t, e])));
            double sum = Score(I[2 * t]) + Score(I[2 * t + 1]);
            for (int k = 0; k < 2; k++) Assert.That(Wt[2 * t + k], Is.EqualTo(1.5 * Score(I[2 * t + k]) / sum).Within(1e-5), $"token {t}");
        }
    }

    [Test]
    public void V4RouterKeepsSoftmaxScoresUnnormalised()
    {
        using var scope = NewDisposeScope();
        var j = V4Json(); j["scoring_func"] = "softmax";
        var c = DeepSeekV4Config.FromJson(j);
        var (gate, x, logits) = RandomGate(c, ScalarType.Float32, 6);
        var (idx, w) = gate.Route(x, zeros(6, dtype: ScalarType.Int64));
        var I = idx.data<long>().ToArray(); var Wt = TestUtil.F(w);
        for (int t = 0; t < 6; t++)
        {
            double z = Enumerable.Range(0, c.NRoutedExperts).Sum(e => Math.Exp(logits[t, e]));
            for (int k = 0; k < 2; k++) Assert.That(Wt[2 * t + k], Is.EqualTo(1.5 * Math.Exp(logits[t, I[2 * t + k]]) / z).Within(1e-5), $"token {t}");
        }
    }

    [Test]
    public void V4RouterLogitsAreFloat32InABFloat16Model()
    {
        using var scope = NewDisposeScope();
        var c = DeepSeekV4Config.FromJson(V4Json());
        var (gate, x, logits) = RandomGate(c, ScalarType.BFloat16, 8);
        var (idx, w) = gate.Route(x, zeros(8, dtype: ScalarType.Int64));
        Assert.That(w.dtype, Is.EqualTo(ScalarType.Float32));
        var I = idx.data<long>().ToArray(); var Wt = TestUtil.F(w);
        for (int t = 0; t < 8; t++)
        {
            double Score(long e) => Math.Sqrt(Math.Log(1 + Math.Exp(logits[t, e])));
            double sum = Score(I[2 * t]) + Score(I[2 * t + 1]);
            // F32 logits of the BF16 values agree with the double computation to ~1e-6; BF16 logits would be off by ~1e-2.
            for (int k = 0; k < 2; k++) Assert.That(Wt[2 * t + k], Is.EqualTo(1.5 * Score(I[2 * t + k]) / sum).Within(2e-5), $"token {t}");
        }
    }

    [Test]
    public void DeepSeekV3ConfigWithoutMoeKeysTakesTransformersDefaults()
    {
        var json = RandomCheckpoint.TinyConfig();
        foreach (var k in new[] { "n_shared_experts", "routed_scaling_factor", "n_group", "topk_group", "first_k_dense_replace" }) json.Remove(k);
        json["n_routed_experts"] = 16;
        json["num_hidden_layers"] = 4;
        var cfg = DeepSeekV3Config.FromJson(json);
        // transformers' DeepseekV3Config and DeepSeek's configuration_deepseek.py defaults.
        Assert.That(cfg.NSharedExperts, Is.EqualTo(1));
        Assert.That(cfg.RoutedScalingFactor, Is.EqualTo(2.5));
        Assert.That(cfg.NGroup, Is.EqualTo(8));
        Assert.That(cfg.TopkGroup, Is.EqualTo(4));
        Assert.That(cfg.FirstKDenseReplace, Is.EqualTo(3));
        Assert.That(Enumerable.Range(0, 4).Select(cfg.IsMoeLayer), Is.EqualTo(new[] { false, false, false, true }));
        // The converter reads the same defaults, so the tensors it expects are the model's.
        var facts = Families.ReadFacts(Families.DeepSeekV3, json);
        Assert.That(facts.MoeLayers.Take(4), Is.EqualTo(new[] { false, false, false, true }));
        using var model = new DeepSeekV3Model(cfg, ScalarType.Float32, CPU);
        Assert.That(model.StateDict().Keys, Has.Some.Contains("model.layers.3.mlp.shared_experts."));
    }

    [Test]
    public void DeepSeekV4ConfigWithoutScalingKeysTakesTransformersDefaults()
    {
        var j = V4Json();
        j.Remove("routed_scaling_factor"); j.Remove("n_shared_experts");
        var c = DeepSeekV4Config.FromJson(j);
        Assert.That(c.RoutedScalingFactor, Is.EqualTo(1.5));
        Assert.That(c.NSharedExperts, Is.EqualTo(1));
    }

    // ---------------------------------------------------------------- GLM-5's indexer RoPE

    static JsonObject FixtureConfig(string fixture) =>
        (JsonObject)JsonNode.Parse(File.ReadAllText(Path.Combine(RepoPaths.Fixtures, fixture, "config.json")))!;

    /// <summary>
    /// GLM-5's indexer rotates adjacent pairs, DeepSeek-V3.2's halves (vLLM's deepseek_v2.py reads
    /// indexer_rope_interleave, false by default, and GLM-5's release sets it; transformers 5.17's GlmMoeDsaIndexer
    /// always rotates pairs). An explicit key wins in either family.
    /// </summary>
    [TestCase("glm-5", null, true)]
    [TestCase("glm-5", false, false)]
    [TestCase("deepseek-v3.2", null, false)]
    [TestCase("deepseek-v3.2", true, true)]
    public void IndexerRopeIsPairsForGlm5AndHalvesForDeepSeekV32UnlessTheConfigSays(string fixture, bool? key, bool pairs)
    {
        var json = FixtureConfig(fixture);
        json.Remove("quantization_config"); // the FP8 release's config; the model reads the dequantized form
        if (key is bool k) json["indexer_rope_interleave"] = k;
        Assert.That(DeepSeekV3Config.FromJson(json).Indexer!.RopeInterleave, Is.EqualTo(pairs));
    }

    [Test]
    public void PartialRopeOnPairsRotatesEachAdjacentPairAndPassesTheRestThrough()
    {
        using var scope = NewDisposeScope();
        var g = new Generator(5);
        var x = randn(new long[] { 1, 1, 1, 6 }, generator: g);      // 4 rotated dims (2 pairs) + 2 passed through
        var angle = new[] { 0.3f, -1.1f };
        var cos = tensor(angle.Select(a => MathF.Cos(a)).ToArray()).view(1, 1, 1, 2);
        var sin = tensor(angle.Select(a => MathF.Sin(a)).ToArray()).view(1, 1, 1, 2);
        var v = TestUtil.F(x);
        var y = TestUtil.F(Rope.ApplyPartial(x, cos, sin, interleave: true));
        for (int p = 0; p < 2; p++)
        {
            float c = MathF.Cos(angle[p]), s = MathF.Sin(angle[p]), a = v[2 * p], b = v[2 * p + 1];
            Assert.That(y[2 * p], Is.EqualTo(a * c - b * s).Within(1e-6), $"pair {p} first");
            Assert.That(y[2 * p + 1], Is.EqualTo(a * s + b * c).Within(1e-6), $"pair {p} second");
        }
        Assert.That(y[4..], Is.EqualTo(v[4..]));
    }
}
