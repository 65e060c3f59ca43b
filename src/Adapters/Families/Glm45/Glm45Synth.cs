using System.Text.Json.Nodes;

namespace Mtp.Adapters.Synthetic;

/// <summary>
/// GLM-4.5 (<c>glm4_moe</c>), as the BF16 release stores it: GQA attention with q/k/v biases and q/k norms, dense first
/// layers, sigmoid-routed MoE with shared experts, MTP at <c>model.layers.{L+k}</c>. The names are
/// <see cref="Glm45Rules"/>'s for this model's config; this record sizes them.
/// </summary>
public sealed record Glm45Synth(int Hidden, int Layers, int Experts, int Vocab, int MtpDepth,
    int Heads, int KvHeads, int HeadDim, int Inter, int MoeInter, int TopK, int FirstDense, bool QkNorm = true, bool Bias = true)
    : SynthModel(Hidden, Layers, Experts, Vocab, MtpDepth)
{
    /// <summary>A few-MB model.</summary>
    public static readonly Glm45Synth Tiny = new(64, 3, 4, 512, 1, 4, 2, 16, 128, 32, 2, 1);
    /// <summary>GLM-4.5's release shape (355B-A32B).</summary>
    public static readonly Glm45Synth Release = new(5120, 92, 160, 151552, 1, 96, 8, 128, 12288, 1536, 8, 3);

    /// <inheritdoc/>
    public override string Family => Adapters.Families.Glm45;
    /// <inheritdoc/>
    public override int MinLayers => FirstDense + 1;
    /// <inheritdoc/>
    public override long BytesPerVocabRow => 4L * Hidden * (1 + MtpDepth);

    /// <inheritdoc/>
    public override SynthModel WithHidden(int hidden)
    {
        double f = (double)hidden / Release.Hidden;
        return this with
        {
            Hidden = hidden, Heads = Math.Max(1, (int)Math.Round(Release.Heads * f)), KvHeads = Math.Max(1, (int)Math.Round(Release.KvHeads * f)),
            HeadDim = Release.HeadDim, Inter = Scale(Release.Inter, f, 32), MoeInter = Scale(Release.MoeInter, f, 32),
        };
    }

    /// <inheritdoc/>
    public override void Validate()
    {
        base.Validate();
        if (Heads % KvHeads != 0) throw new ArgumentException($"attention heads {Heads} must be a multiple of the key/value heads {KvHeads}");
        if (Layers <= FirstDense) throw new ArgumentException($"layers {Layers} must exceed the {FirstDense} dense layer(s)");
    }

    /// <inheritdoc/>
    internal override SynthStorage? StorageOf(string local, LayerContext layer)
    {
        int H = Hidden, E = Experts, q = Heads * HeadDim, kv = KvHeads * HeadDim;
        return local switch
        {
            "model.embed_tokens.weight" or "lm_head.weight" => SynthStorage.Bf16(0.02, Vocab, H),
            "model.norm.weight" or "input_layernorm.weight" or "post_attention_layernorm.weight"
                or "enorm.weight" or "hnorm.weight" or "shared_head.norm.weight" => SynthStorage.Norm(H),
            "self_attn.q_proj.weight" => SynthStorage.Bf16(0.02, q, H),
            "self_attn.k_proj.weight" or "self_attn.v_proj.weight" => SynthStorage.Bf16(0.02, kv, H),
            "self_attn.q_proj.bias" => SynthStorage.Bf16(0.02, q),
            "self_attn.k_proj.bias" or "self_attn.v_proj.bias" => SynthStorage.Bf16(0.02, kv),
            "self_attn.o_proj.weight" => SynthStorage.Bf16(0.02, H, q),
            "self_attn.q_norm.weight" or "self_attn.k_norm.weight" => SynthStorage.Norm(HeadDim),
            "mlp.gate_proj.weight" or "mlp.up_proj.weight" => SynthStorage.Bf16(0.02, Inter, H),
            "mlp.down_proj.weight" => SynthStorage.Bf16(0.02, H, Inter),
            "mlp.gate.weight" => SynthStorage.Bf16(0.02, E, H),
            "mlp.gate.e_score_correction_bias" => SynthStorage.F32(0.05, E),
            "mlp.experts.{e}.gate_proj.weight" or "mlp.experts.{e}.up_proj.weight" or "mlp.shared_experts.gate_proj.weight"
                or "mlp.shared_experts.up_proj.weight" => SynthStorage.Bf16(0.02, MoeInter, H),
            "mlp.experts.{e}.down_proj.weight" or "mlp.shared_experts.down_proj.weight" => SynthStorage.Bf16(0.02, H, MoeInter),
            "eh_proj.weight" => SynthStorage.Bf16(0.02, H, 2 * H),
            _ => null,
        };
    }

    /// <inheritdoc/>
    internal override JsonObject Config() => new()
    {
        ["architectures"] = new JsonArray("Glm4MoeForCausalLM"),
        ["attention_bias"] = Bias,
        ["attention_dropout"] = 0.0,
        ["eos_token_id"] = new JsonArray(1, 2),
        ["first_k_dense_replace"] = FirstDense,
        ["head_dim"] = HeadDim,
        ["hidden_act"] = "silu",
        ["hidden_size"] = Hidden,
        ["initializer_range"] = 0.02,
        ["intermediate_size"] = Inter,
        ["max_position_embeddings"] = 131072,
        ["model_type"] = ModelTypes.Glm4Moe,
        ["moe_intermediate_size"] = MoeInter,
        ["n_group"] = 1,
        ["n_routed_experts"] = Experts,
        ["n_shared_experts"] = 1,
        ["norm_topk_prob"] = true,
        ["num_attention_heads"] = Heads,
        ["num_experts_per_tok"] = Math.Min(TopK, Experts),
        ["num_hidden_layers"] = Layers,
        ["num_key_value_heads"] = KvHeads,
        ["num_nextn_predict_layers"] = MtpDepth,
        ["pad_token_id"] = 0,
        ["partial_rotary_factor"] = 0.5,
        ["rms_norm_eps"] = 1e-05,
        ["rope_scaling"] = null,
        ["rope_theta"] = 1000000,
        ["routed_scaling_factor"] = 2.5,
        ["tie_word_embeddings"] = false,
        ["topk_group"] = 1,
        ["torch_dtype"] = "bfloat16",
        ["transformers_version"] = "4.54.0",
        ["use_cache"] = true,
        ["use_qk_norm"] = QkNorm,
        ["vocab_size"] = Vocab,
    };
}
