using System.Text.Json.Nodes;
using Mtp.Model.Qwen;
using TorchSharp;
using static TorchSharp.torch;

namespace Mtp.Model.Tests;

public class QwenNextTests
{
    /// <summary>
    /// A Qwen3-Next model of <see cref="NextConfig"/> (2 MTP layers) with seeded random weights: A_log and dt_bias in
    /// [-0.5, 0.5), norms around 0 (zero-centred), everything else normal with std 0.3.
    /// </summary>
    internal static QwenModel RandomModel(long seed, bool tied = false, Action<JsonObject>? edit = null)
    {
        var cfg = NextConfig(tied);
        edit?.Invoke(cfg);
        var m = new QwenModel(QwenConfig.FromJson(cfg), ScalarType.Float32, CPU);
        var g = new Generator((ulong)seed);
        using var _ = no_grad();
        foreach (var (n, p) in m.named_parameters())
            p.copy_(n.EndsWith("A_log") || n.EndsWith("dt_bias") ? rand(p.shape, generator: g).Minus(0.5) : randn(p.shape, generator: g).Times(0.3));
        return m;
    }

    static JsonObject NextConfig(bool tied) => new()
    {
        ["model_type"] = "qwen3_next", ["vocab_size"] = 64, ["hidden_size"] = 16, ["num_hidden_layers"] = 2,
        ["full_attention_interval"] = 2, ["num_attention_heads"] = 2, ["num_key_value_heads"] = 1, ["head_dim"] = 8,
        ["partial_rotary_factor"] = 0.25, ["rope_theta"] = 10000, ["rms_norm_eps"] = 1e-6,
        ["linear_num_key_heads"] = 2, ["linear_num_value_heads"] = 4, ["linear_key_head_dim"] = 4, ["linear_value_head_dim"] = 4,
        ["linear_conv_kernel_dim"] = 4, ["num_experts"] = 4, ["num_experts_per_tok"] = 2, ["moe_intermediate_size"] = 8,
        ["shared_expert_intermediate_size"] = 8, ["intermediate_size"] = 32, ["norm_topk_prob"] = false,
        ["decoder_sparse_step"] = 1, ["mlp_only_layers"] = new JsonArray(1), ["tie_word_embeddings"] = tied,
        ["num_nextn_predict_layers"] = 2,
    };

    [Test]
    public void ConfigReadsLayerKindsMlpKindsAndRouting()
    {
        var c = QwenConfig.FromJson(NextConfig(tied: true));
        Assert.That(c.IsQwen3Next && !c.NormTopkProb && c.TieWordEmbeddings);
        Assert.That(c.FullAttention, Is.EqualTo(new[] { false, true }));
        Assert.That(c.IsMoeLayer(0) && !c.IsMoeLayer(1));
        using var m = new QwenModel(c, ScalarType.Float32, CPU);
        var names = m.StateDict().Keys.ToList();
        Assert.That(names, Has.None.EqualTo("lm_head.weight"));
        Assert.That(names, Does.Contain("model.layers.0.linear_attn.in_proj_qkvz.weight").And.Contain("model.layers.0.linear_attn.in_proj_ba.weight"));
        Assert.That(names, Does.Contain("model.layers.1.mlp.gate_proj.weight"));
        Assert.That(names, Does.Contain("mtp.layers.1.mlp.experts.gate_up_proj"));
        Assert.That(names.Where(n => n.Contains("eh_proj")), Is.EqualTo(new[] { "mtp.layers.0.eh_proj.weight" }));
        Assert.That(m.MtpDepthCount, Is.EqualTo(2));
        using var scope = NewDisposeScope();
        using var batch = TestUtil.RandomBatch(1, 12, new long[] { 0, 5, 12 }, 64, 1);
        var o = m.Forward(batch);
        Assert.That(o.MtpLogits.Count, Is.EqualTo(2));
    }

    /// <summary>The fused in_proj_qkvz / in_proj_ba (grouped per key head) give the same mixer as Qwen3.5's split ones.</summary>
    [Test]
    public void FusedProjectionsEqualSplitProjections()
    {
        using var scope = NewDisposeScope();
        var nextCfg = QwenConfig.FromJson(NextConfig(tied: false));
        var splitCfg = nextCfg with { IsQwen3Next = false };
        using var fused = new GatedDeltaNet(nextCfg, ScalarType.Float32, CPU);
        using var split = new GatedDeltaNet(splitCfg, ScalarType.Float32, CPU);
        manual_seed(2);
        int nk = 2, r = 2, dk = 4, dv = 4, h = 16;
        var sp = split.named_parameters().ToDictionary(p => p.name, p => p.parameter);
        var fp = fused.named_parameters().ToDictionary(p => p.name, p => p.parameter);
        using (no_grad())
        {
            foreach (var (n, p) in sp) p.copy_(n is "A_log" or "dt_bias" ? rand(p.shape).Minus(0.5) : randn(p.shape).Times(0.4));
            foreach (var n in new[] { "conv1d.weight", "A_log", "dt_bias", "norm.weight", "out_proj.weight" }) fp[n].copy_(sp[n]);
            var qkv = sp["in_proj_qkv.weight"];
            var q = qkv.narrow(0, 0, nk * dk).view(nk, dk, h);
            var k = qkv.narrow(0, nk * dk, nk * dk).view(nk, dk, h);
            var v = qkv.narrow(0, 2 * nk * dk, nk * r * dv).view(nk, r * dv, h);
            var z = sp["in_proj_z.weight"].view(nk, r * dv, h);
            fp["in_proj_qkvz.weight"].copy_(cat(new[] { q, k, v, z }, 1).reshape(-1, h));
            var b = sp["in_proj_b.weight"].view(nk, r, h);
            var a = sp["in_proj_a.weight"].view(nk, r, h);
            fp["in_proj_ba.weight"].copy_(cat(new[] { b, a }, 1).reshape(-1, h));
        }
        var x = randn(2, 9, h);
        var want = split.Mix(x, DeltaRuleMode.Recurrent, 4);
        var got = fused.Mix(x, DeltaRuleMode.Recurrent, 4);
        Assert.That(TestUtil.F(got), Is.EqualTo(TestUtil.F(want)).Within(1e-6));
    }
}
