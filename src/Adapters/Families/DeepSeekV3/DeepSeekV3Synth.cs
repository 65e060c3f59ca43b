using System.Text.Json.Nodes;

namespace Mtp.Adapters.Synthetic;

/// <summary>
/// DeepSeek-V3 (also V3.1/R1): model.* names, MLA attention, FP8 with F32 weight_scale_inv, MTP at model.layers.{L+k}.
/// With <see cref="IndexHeads"/> &gt; 0 it is DeepSeek-V3.2: the sparse-attention indexer in every layer and power-of-two
/// F32 scales (<c>scale_fmt</c> "ue8m0"). The names are <see cref="DeepSeekV3Rules"/>'s for this model's config; this
/// record sizes them.
/// </summary>
public sealed record DeepSeekV3Synth(int Hidden, int Layers, int Experts, int Vocab, int MtpDepth,
    int Heads, int QLora, int KvLora, int Nope, int Rope, int VHead, int Inter, int MoeInter, int Shared, int TopK, int? DenseLayers = null,
    int IndexHeads = 0, int IndexHeadDim = 0)
    : SynthModel(Hidden, Layers, Experts, Vocab, MtpDepth)
{
    /// <summary>Whether this is DeepSeek-V3.2 (an indexer in every layer).</summary>
    public bool IsV32 => IndexHeads > 0;

    /// <summary>A few-MB model.</summary>
    public static readonly DeepSeekV3Synth Tiny = new(64, 3, 4, 512, 1, 2, 64, 64, 32, 16, 32, 256, 64, 1, 2);
    /// <summary>DeepSeek-V3's release shape (671B).</summary>
    public static readonly DeepSeekV3Synth Release = new(7168, 61, 256, 129280, 1, 128, 1536, 512, 128, 64, 128, 18432, 2048, 1, 8);
    // (after Tiny and Release: static fields initialize in textual order)
    /// <summary>A few-MB DeepSeek-V3.2 model.</summary>
    public static readonly DeepSeekV3Synth TinyV32 = Tiny with { IndexHeads = 2, IndexHeadDim = 32 };
    /// <summary>DeepSeek-V3.2's release shape (V3's, plus a 64-head, 128-wide indexer).</summary>
    public static readonly DeepSeekV3Synth ReleaseV32 = Release with { IndexHeads = 64, IndexHeadDim = 128 };

    /// <inheritdoc/>
    public override string Family => IsV32 ? Adapters.Families.DeepSeekV32 : Adapters.Families.DeepSeekV3;
    /// <inheritdoc/>
    public override int MinLayers => 2;
    /// <summary>Dense layers before the MoE ones (3 in the release; 1 below 8 layers).</summary>
    public int FirstDense => DenseLayers ?? (Layers >= 8 ? 3 : 1);
    /// <inheritdoc/>
    public override long BytesPerVocabRow => 4L * Hidden * (1 + MtpDepth);

    /// <inheritdoc/>
    public override SynthModel WithHidden(int hidden)
    {
        double f = (double)hidden / Release.Hidden;
        return this with // the indexer's head count and width stay the release's (as the attention head dimensions)
        {
            Hidden = hidden, Heads = Math.Max(1, (int)Math.Round(Release.Heads * f)), QLora = Scale(Release.QLora, f, 32),
            KvLora = Scale(Release.KvLora, f, 32), Inter = Scale(Release.Inter, f, 32), MoeInter = Scale(Release.MoeInter, f, 32),
            Nope = Release.Nope, Rope = Release.Rope, VHead = Release.VHead,
        };
    }

    /// <inheritdoc/>
    internal override SynthStorage? StorageOf(string local, LayerContext layer)
    {
        int H = Hidden, E = Experts, si = MoeInter * Shared;
        SynthStorage Fp8(long rows, long cols) => SynthStorage.Fp8(rows, cols, Scheme.ScaleDType, powerOfTwo: IsV32);
        return local switch
        {
            "model.embed_tokens.weight" or "lm_head.weight" => SynthStorage.Bf16(0.02, Vocab, H),
            "model.norm.weight" or "input_layernorm.weight" or "post_attention_layernorm.weight"
                or "enorm.weight" or "hnorm.weight" or "shared_head.norm.weight" => SynthStorage.Norm(H),
            "self_attn.q_a_proj.weight" => Fp8(QLora, H),
            "self_attn.q_a_layernorm.weight" => SynthStorage.Norm(QLora),
            "self_attn.q_b_proj.weight" => Fp8(Heads * (Nope + Rope), QLora),
            "self_attn.kv_a_proj_with_mqa.weight" => Fp8(KvLora + Rope, H),
            "self_attn.kv_a_layernorm.weight" => SynthStorage.Norm(KvLora),
            "self_attn.kv_b_proj.weight" => Fp8(Heads * (Nope + VHead), KvLora),
            "self_attn.o_proj.weight" => Fp8(H, Heads * VHead),
            "mlp.gate_proj.weight" or "mlp.up_proj.weight" => Fp8(Inter, H),
            "mlp.down_proj.weight" => Fp8(H, Inter),
            "mlp.gate.weight" => SynthStorage.Bf16(0.02, E, H),
            "mlp.gate.e_score_correction_bias" => SynthStorage.F32(0.05, E),
            "mlp.experts.{e}.gate_proj.weight" or "mlp.experts.{e}.up_proj.weight" => Fp8(MoeInter, H),
            "mlp.experts.{e}.down_proj.weight" => Fp8(H, MoeInter),
            "mlp.shared_experts.gate_proj.weight" or "mlp.shared_experts.up_proj.weight" => Fp8(si, H),
            "mlp.shared_experts.down_proj.weight" => Fp8(H, si),
            "eh_proj.weight" => SynthStorage.Bf16(0.02, H, 2 * H),
            "self_attn.indexer.wq_b.weight" => Fp8(IndexHeads * IndexHeadDim, QLora),
            "self_attn.indexer.wk.weight" => Fp8(IndexHeadDim, H),
            "self_attn.indexer.k_norm.weight" => SynthStorage.Norm(IndexHeadDim),
            "self_attn.indexer.k_norm.bias" => SynthStorage.Bf16(0.02, IndexHeadDim),
            "self_attn.indexer.weights_proj.weight" => SynthStorage.Bf16(0.02, IndexHeads, H),
            _ => null,
        };
    }

    /// <inheritdoc/>
    internal override JsonObject Config()
    {
        int H = Hidden, L = Layers, E = Experts;
        int nGroup = E % 8 == 0 && E >= 16 ? 8 : E % 2 == 0 && E >= 4 ? 2 : 1; // group-limited routing scores a group by its top 2
        // Half the groups kept, as the release does, but never fewer experts than a token is routed to: a model must be
        // able to load what synth writes (8 experts in 2 groups, top-8, keeps both groups).
        int topK = Math.Min(TopK, E), perGroup = E / nGroup;
        int topkGroup = Math.Min(nGroup, Math.Max(Math.Max(1, nGroup / 2), (topK + perGroup - 1) / perGroup));
        var config = new JsonObject
        {
            ["architectures"] = new JsonArray(IsV32 ? "DeepseekV32ForCausalLM" : "DeepseekV3ForCausalLM"),
            ["model_type"] = FamilyRegistry.Module(Family)!.Identity.ModelType,
            ["attention_bias"] = false,
            ["attention_dropout"] = 0.0,
            ["auto_map"] = new JsonObject
            {
                ["AutoConfig"] = "configuration_deepseek.DeepseekV3Config",
                ["AutoModel"] = "modeling_deepseek.DeepseekV3Model",
                ["AutoModelForCausalLM"] = "modeling_deepseek.DeepseekV3ForCausalLM",
            },
            ["bos_token_id"] = 0,
            ["eos_token_id"] = 1,
            ["ep_size"] = 1,
            ["first_k_dense_replace"] = FirstDense,
            ["hidden_act"] = "silu",
            ["hidden_size"] = H,
            ["initializer_range"] = 0.02,
            ["intermediate_size"] = Inter,
            ["kv_lora_rank"] = KvLora,
            ["max_position_embeddings"] = 4096,
            ["moe_intermediate_size"] = MoeInter,
            ["moe_layer_freq"] = 1,
            ["n_group"] = nGroup,
            ["n_routed_experts"] = E,
            ["n_shared_experts"] = Shared,
            ["norm_topk_prob"] = true,
            ["num_attention_heads"] = Heads,
            ["num_experts_per_tok"] = topK,
            ["num_hidden_layers"] = L,
            ["num_key_value_heads"] = Heads,
            ["num_nextn_predict_layers"] = MtpDepth,
            ["q_lora_rank"] = QLora,
            ["qk_nope_head_dim"] = Nope,
            ["qk_rope_head_dim"] = Rope,
            ["quantization_config"] = Fp8QuantizationConfig(IsV32 ? "ue8m0" : null),
            ["rms_norm_eps"] = 1e-06,
            ["rope_scaling"] = new JsonObject
            {
                ["beta_fast"] = 32, ["beta_slow"] = 1, ["factor"] = 40, ["mscale"] = 1.0, ["mscale_all_dim"] = 1.0,
                ["original_max_position_embeddings"] = 4096, ["type"] = "yarn",
            },
            ["rope_theta"] = 10000,
            ["routed_scaling_factor"] = 2.5,
            ["scoring_func"] = "sigmoid",
            ["tie_word_embeddings"] = false,
            ["topk_group"] = topkGroup,
            ["topk_method"] = "noaux_tc",
            ["torch_dtype"] = "bfloat16",
            ["transformers_version"] = "4.33.1",
            ["use_cache"] = true,
            ["v_head_dim"] = VHead,
            ["vocab_size"] = Vocab,
        };
        if (IsV32)
        {
            config["index_head_dim"] = IndexHeadDim;
            config["index_n_heads"] = IndexHeads;
            config["index_topk"] = 2048;
        }
        return config;
    }
}
