using System.Text.Json.Nodes;
using Mtp.SafeTensors;

namespace Mtp.Adapters.Synthetic;

/// <summary>
/// DeepSeek-V4-Flash: unprefixed module names, hyper-connection params, compressor/indexer on layers by
/// <c>compress_ratios</c> (layer 0: 0, odd layers: 4, even layers: 128; MTP layers: 0), hash-routed first
/// layers with <c>tid2eid</c>, FP8 E4M3 with E8M0 <c>.scale</c> for attention and shared experts, FP4
/// (I8-packed, E8M0 per 32 columns) routed experts, MTP at <c>mtp.{k}.*</c> (without the optional per-depth embedding
/// and head copies). The names are <see cref="DeepSeekV4Rules"/>'s for this model's config; this record sizes them.
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
        if (MoeInter % Scheme.Fp4Group != 0) throw new ArgumentException($"moe intermediate size {MoeInter} must be a multiple of {Scheme.Fp4Group} (FP4 groups)");
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
    internal override SynthStorage? StorageOf(string local, LayerContext layer)
    {
        int H = Hidden, E = Experts, hc = Hc, mix = (2 + hc) * hc, topk = Math.Min(TopK, E);
        int ratio = layer.IsMtp ? 0 : RatioOf(layer.HfLayer), coff = ratio == 4 ? 2 : 1; // the overlapping (ratio 4) compressors are twice as wide
        SynthStorage Fp8(long rows, long cols) => SynthStorage.Fp8(rows, cols, Scheme.ScaleDType);
        return local switch
        {
            "embed.weight" or "head.weight" => SynthStorage.Bf16(0.02, Vocab, H),
            "norm.weight" or "enorm.weight" or "hnorm.weight" or "attn_norm.weight" or "ffn_norm.weight" => SynthStorage.Norm(H),
            "hc_head_fn" => SynthStorage.F32(0.02, hc, hc * H),
            "hc_head_base" => SynthStorage.F32(0.02, hc),
            "hc_head_scale" => SynthStorage.F32(0.02, 1),
            "e_proj.weight" or "h_proj.weight" => Fp8(H, H),
            "hc_attn_fn" or "hc_ffn_fn" => SynthStorage.F32(0.02, mix, hc * H),
            "hc_attn_base" or "hc_ffn_base" => SynthStorage.F32(0.02, mix),
            "hc_attn_scale" or "hc_ffn_scale" => SynthStorage.F32(0.02, 3),
            "attn.attn_sink" => SynthStorage.F32(0.5, Heads),
            "attn.wq_a.weight" => Fp8(QLora, H),
            "attn.q_norm.weight" => SynthStorage.Norm(QLora),
            "attn.wq_b.weight" => Fp8(Heads * HeadDim, QLora),
            "attn.wkv.weight" => Fp8(HeadDim, H),
            "attn.kv_norm.weight" => SynthStorage.Norm(HeadDim),
            "attn.wo_a.weight" => Fp8(OGroups * OLora, Heads * HeadDim / OGroups),
            "attn.wo_b.weight" => Fp8(H, OGroups * OLora),
            "attn.compressor.ape" => SynthStorage.F32(0.02, ratio, coff * HeadDim),
            "attn.compressor.wkv.weight" or "attn.compressor.wgate.weight" => SynthStorage.Bf16(0.02, coff * HeadDim, H),
            "attn.compressor.norm.weight" => SynthStorage.Norm(HeadDim),
            "attn.indexer.wq_b.weight" => Fp8(IndexHeads * IndexHeadDim, QLora),
            "attn.indexer.weights_proj.weight" => SynthStorage.Bf16(0.02, IndexHeads, H),
            "attn.indexer.compressor.ape" => SynthStorage.F32(0.02, ratio, coff * IndexHeadDim),
            "attn.indexer.compressor.wkv.weight" or "attn.indexer.compressor.wgate.weight" => SynthStorage.Bf16(0.02, coff * IndexHeadDim, H),
            "attn.indexer.compressor.norm.weight" => SynthStorage.Norm(IndexHeadDim),
            "ffn.gate.weight" => SynthStorage.Bf16(0.02, E, H),
            "ffn.gate.tid2eid" => SynthStorage.Ids(E, Tid2EidI64 ? DType.I64 : DType.I32, Vocab, topk),
            "ffn.gate.bias" => SynthStorage.F32(0.05, E),
            "ffn.experts.{e}.w1.weight" or "ffn.experts.{e}.w3.weight" => SynthStorage.Fp4(MoeInter, H),
            "ffn.experts.{e}.w2.weight" => SynthStorage.Fp4(H, MoeInter),
            "ffn.shared_experts.w1.weight" or "ffn.shared_experts.w3.weight" => Fp8(MoeInter, H),
            "ffn.shared_experts.w2.weight" => Fp8(H, MoeInter),
            _ => null,
        };
    }

    /// <inheritdoc/>
    internal override JsonObject Config()
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
            ["quantization_config"] = Fp8QuantizationConfig(scaleFmt: "ue8m0"),
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
