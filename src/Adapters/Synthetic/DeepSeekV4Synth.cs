using System.Text.Json.Nodes;
using Mtp.SafeTensors;

namespace Mtp.Adapters.Synthetic;

/// <summary>
/// DeepSeek-V4-Flash: unprefixed module names, hyper-connection params, compressor/indexer on layers by
/// <c>compress_ratios</c> (layer 0: 0, odd layers: 4, even layers: 128; MTP layers: 0), hash-routed first
/// layers with <c>tid2eid</c>, FP8 E4M3 with E8M0 <c>.scale</c> for attention and shared experts, FP4
/// (I8-packed, E8M0 per 32 columns) routed experts, MTP at <c>mtp.{k}.*</c>.
/// </summary>
public sealed record DeepSeekV4Synth(int Hidden, int Layers, int Experts, int Vocab, int MtpDepth,
    int Heads, int HeadDim, int Rope, int QLora, int OGroups, int OLora, int MoeInter, int TopK, int Hc,
    int IndexHeads, int IndexHeadDim, int Window, int[]? Ratios = null, int? HashLayerCount = null, bool Tid2EidI64 = false)
    : SynthModel(Hidden, Layers, Experts, Vocab, MtpDepth)
{
    /// <summary>A few-MB model.</summary>
    public static readonly DeepSeekV4Synth Tiny = new(64, 3, 4, 512, 1, 2, 64, 16, 64, 2, 32, 64, 2, 2, 2, 32, 16);
    /// <summary>V4-Flash-like release shape (H 4096, 43 layers, 256 experts).</summary>
    public static readonly DeepSeekV4Synth Release = new(4096, 43, 256, 129280, 1, 64, 512, 64, 1024, 8, 1024, 2048, 6, 4, 64, 128, 128);

    /// <inheritdoc/>
    public override string Family => Adapters.Families.DeepSeekV4;
    /// <inheritdoc/>
    public override int MinLayers => 3;
    /// <summary>Hash-routed layers: <see cref="HashLayerCount"/> when given (a released config's num_hash_layers), else 3 in the release shape and 1 below 8 layers.</summary>
    public int HashLayers => HashLayerCount ?? (Layers >= 8 ? 3 : 1);

    /// <summary>compress_ratios entry of block <paramref name="i"/> (MTP blocks: 0): <see cref="Ratios"/> when given (a released config's list), else <see cref="CompressRatio"/>.</summary>
    public int RatioOf(int i) => Ratios is null ? (i < Layers ? CompressRatio(i) : 0) : i < Ratios.Length ? Ratios[i] : 0;
    /// <summary>compress_ratios for main layer <paramref name="i"/>.</summary>
    public static int CompressRatio(int i) => i == 0 ? 0 : i % 2 == 1 ? 4 : 128;

    /// <inheritdoc/>
    public override void Validate()
    {
        base.Validate();
        if (MoeInter % PlanBuilder.Fp4Group != 0) throw new ArgumentException($"moe intermediate size {MoeInter} must be a multiple of {PlanBuilder.Fp4Group} (FP4 groups)");
        if (Heads * HeadDim % OGroups != 0) throw new ArgumentException("heads * head_dim must be a multiple of o_groups");
    }

    /// <inheritdoc/>
    public override SynthModel WithHidden(int hidden)
    {
        double f = (double)hidden / Release.Hidden;
        int heads = Math.Max(Release.OGroups, (int)Math.Round(Release.Heads * f / Release.OGroups) * Release.OGroups);
        return this with
        {
            Hidden = hidden, Heads = heads, HeadDim = Release.HeadDim, Rope = Release.Rope, QLora = Scale(Release.QLora, f, 32),
            OGroups = Release.OGroups, OLora = Scale(Release.OLora, f, 32), MoeInter = Scale(Release.MoeInter, f, 32),
            Hc = Release.Hc, IndexHeads = Math.Max(1, (int)Math.Round(Release.IndexHeads * f)), IndexHeadDim = Release.IndexHeadDim,
            Window = Release.Window,
        };
    }

    /// <inheritdoc/>
    public override SynthPlan Build()
    {
        Validate();
        var b = new PlanBuilder();
        int H = Hidden, L = Layers, hc = Hc;
        void Fp8(string stem, long rows, long cols) => b.Fp8(stem, rows, cols, Scheme.ScaleDType, Scheme.Naming);
        void Block(string p, int layerId, int ratio) => AddBlock(b, p, layerId, ratio);

        b.Bf16("embed.weight", 0.02, Vocab, H);
        for (int i = 0; i < L; i++) Block($"layers.{i}.", i, RatioOf(i));
        b.Norm("norm.weight", H);
        b.Bf16("head.weight", 0.02, Vocab, H);
        b.F32("hc_head_fn", 0.02, hc, hc * H);
        b.F32("hc_head_base", 0.02, hc);
        b.F32("hc_head_scale", 0.02, 1);
        for (int k = 0; k < MtpDepth; k++)
        {
            string p = $"mtp.{k}.";
            Block(p, L + k, 0);
            Fp8(p + "e_proj", H, H);
            Fp8(p + "h_proj", H, H);
            b.Norm(p + "enorm.weight", H);
            b.Norm(p + "hnorm.weight", H);
            b.Norm(p + "norm.weight", H);
            b.F32(p + "hc_head_fn", 0.02, hc, hc * H);
            b.F32(p + "hc_head_base", 0.02, hc);
            b.F32(p + "hc_head_scale", 0.02, 1);
        }

        return new SynthPlan(Family, b.Tensors, Config());
    }

    /// <summary>One decoder block (a main layer, or an MTP depth's) under prefix <paramref name="p"/>.</summary>
    void AddBlock(PlanBuilder b, string p, int layerId, int ratio)
    {
        int H = Hidden, E = Experts, hc = Hc, mix = (2 + hc) * hc, topk = Math.Min(TopK, E);
        void Fp8(string stem, long rows, long cols) => b.Fp8(stem, rows, cols, Scheme.ScaleDType, Scheme.Naming);
        b.Norm(p + "attn_norm.weight", H);
        b.Norm(p + "ffn_norm.weight", H);
        foreach (string k in new[] { "attn", "ffn" })
        {
            b.F32($"{p}hc_{k}_fn", 0.02, mix, hc * H);
            b.F32($"{p}hc_{k}_base", 0.02, mix);
            b.F32($"{p}hc_{k}_scale", 0.02, 3);
        }
        string a = p + "attn.";
        b.F32(a + "attn_sink", 0.5, Heads);
        Fp8(a + "wq_a", QLora, H);
        b.Norm(a + "q_norm.weight", QLora);
        Fp8(a + "wq_b", Heads * HeadDim, QLora);
        Fp8(a + "wkv", HeadDim, H);
        b.Norm(a + "kv_norm.weight", HeadDim);
        Fp8(a + "wo_a", OGroups * OLora, Heads * HeadDim / OGroups);
        Fp8(a + "wo_b", H, OGroups * OLora);
        if (ratio > 0)
        {
            int coff = ratio == 4 ? 2 : 1;
            string cp = a + "compressor.";
            b.F32(cp + "ape", 0.02, ratio, coff * HeadDim);
            b.Bf16(cp + "wkv.weight", 0.02, coff * HeadDim, H);
            b.Bf16(cp + "wgate.weight", 0.02, coff * HeadDim, H);
            b.Norm(cp + "norm.weight", HeadDim);
            if (ratio == 4)
            {
                string ip = a + "indexer.";
                Fp8(ip + "wq_b", IndexHeads * IndexHeadDim, QLora);
                b.Bf16(ip + "weights_proj.weight", 0.02, IndexHeads, H);
                b.F32(ip + "compressor.ape", 0.02, ratio, coff * IndexHeadDim);
                b.Bf16(ip + "compressor.wkv.weight", 0.02, coff * IndexHeadDim, H);
                b.Bf16(ip + "compressor.wgate.weight", 0.02, coff * IndexHeadDim, H);
                b.Norm(ip + "compressor.norm.weight", IndexHeadDim);
            }
        }
        string f = p + "ffn.";
        b.Bf16(f + "gate.weight", 0.02, E, H);
        if (layerId < HashLayers) b.Ids(f + "gate.tid2eid", E, Tid2EidI64 ? DType.I64 : DType.I32, Vocab, topk);
        else b.F32(f + "gate.bias", 0.05, E);
        for (int e = 0; e < E; e++)
        {
            b.Fp4($"{f}experts.{e}.w1", MoeInter, H, Scheme.Naming);
            b.Fp4($"{f}experts.{e}.w2", H, MoeInter, Scheme.Naming);
            b.Fp4($"{f}experts.{e}.w3", MoeInter, H, Scheme.Naming);
        }
        Fp8(f + "shared_experts.w1", MoeInter, H);
        Fp8(f + "shared_experts.w2", H, MoeInter);
        Fp8(f + "shared_experts.w3", MoeInter, H);
    }

    /// <summary>The config.json of this model.</summary>
    JsonObject Config()
    {
        int H = Hidden, L = Layers, E = Experts, hc = Hc, topk = Math.Min(TopK, E);
        return new JsonObject
        {
            ["architectures"] = new JsonArray("DeepseekV4ForCausalLM"),
            ["model_type"] = ModelTypes.DeepSeekV4,
            ["attention_bias"] = false,
            ["attention_dropout"] = 0.0,
            ["bos_token_id"] = 0,
            ["eos_token_id"] = 1,
            ["compress_ratios"] = Ints(Enumerable.Range(0, L + MtpDepth).Select(RatioOf)),
            ["compress_rope_theta"] = 160000,
            ["expert_dtype"] = "fp4",
            ["hc_eps"] = 1e-06,
            ["hc_mult"] = hc,
            ["hc_sinkhorn_iters"] = 20,
            ["head_dim"] = HeadDim,
            ["hidden_act"] = "silu",
            ["hidden_size"] = H,
            ["index_head_dim"] = IndexHeadDim,
            ["index_n_heads"] = IndexHeads,
            ["index_topk"] = Math.Min(512, Math.Max(16, Window * 4)),
            ["initializer_range"] = 0.02,
            ["max_position_embeddings"] = 4096,
            ["moe_intermediate_size"] = MoeInter,
            ["n_routed_experts"] = E,
            ["n_shared_experts"] = 1,
            ["norm_topk_prob"] = true,
            ["num_attention_heads"] = Heads,
            ["num_experts_per_tok"] = topk,
            ["num_hash_layers"] = HashLayers,
            ["num_hidden_layers"] = L,
            ["num_key_value_heads"] = 1,
            ["num_nextn_predict_layers"] = MtpDepth,
            ["o_groups"] = OGroups,
            ["o_lora_rank"] = OLora,
            ["q_lora_rank"] = QLora,
            ["qk_rope_head_dim"] = Rope,
            ["quantization_config"] = new JsonObject
            {
                ["activation_scheme"] = "dynamic",
                ["fmt"] = "e4m3",
                ["quant_method"] = "fp8",
                ["scale_fmt"] = "ue8m0",
                ["weight_block_size"] = Ints(new[] { PlanBuilder.Block, PlanBuilder.Block }),
            },
            ["rms_norm_eps"] = 1e-06,
            ["rope_scaling"] = new JsonObject
            {
                ["beta_fast"] = 32, ["beta_slow"] = 1, ["factor"] = 16,
                ["original_max_position_embeddings"] = 256, ["type"] = "yarn",
            },
            ["rope_theta"] = 10000,
            ["routed_scaling_factor"] = 1.5,
            ["scoring_func"] = "sqrtsoftplus",
            ["sliding_window"] = Window,
            ["swiglu_limit"] = 10.0,
            ["tie_word_embeddings"] = false,
            ["topk_method"] = "noaux_tc",
            ["torch_dtype"] = "bfloat16",
            ["transformers_version"] = "4.57.1",
            ["use_cache"] = true,
            ["vocab_size"] = Vocab,
        };
    }
}
