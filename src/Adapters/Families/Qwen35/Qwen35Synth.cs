using System.Text.Json.Nodes;
using Mtp.SafeTensors;

namespace Mtp.Adapters.Synthetic;

/// <summary>
/// Qwen3.5-MoE (qwen3_5_moe): text under <c>model.language_model.*</c>, a few <c>model.visual.*</c>
/// tensors, hybrid Gated-DeltaNet / full-attention layers, MTP under <c>mtp.*</c>. The BF16 release has
/// fused experts in the main layers and per-expert ones in <c>mtp.layers.{j}</c>; with <see cref="Fp8"/>
/// (the FP8 release) every projection is FP8 E4M3 with a BF16 <c>weight_scale_inv</c>, experts are
/// per-expert everywhere and config.json lists <c>modules_to_not_convert</c>. The text names are
/// <see cref="QwenRules"/>'s for this model's config; the vision tensors are listed here (a carry-through rule takes them).
/// </summary>
public sealed record Qwen35Synth(int Hidden, int Layers, int Experts, int Vocab, int MtpDepth,
    int Interval, int Heads, int KvHeads, int HeadDim, int LkHeads, int LvHeads, int LkDim, int LvDim, int Conv,
    int TopK, int MoeInter, int SharedInter, int VisHidden, int Patch, bool Fp8 = false)
    : SynthModel(Hidden, Layers, Experts, Vocab, MtpDepth)
{
    /// <summary>A few-MB model.</summary>
    public static readonly Qwen35Synth Tiny = new(64, 4, 4, 512, 1, 4, 4, 1, 32, 2, 4, 16, 16, 4, 2, 64, 64, 32, 4);
    /// <summary>Qwen3.5-35B-A3B-like release shape (H 2048, 40 layers, 256 experts).</summary>
    public static readonly Qwen35Synth Release = new(2048, 40, 256, 248320, 1, 4, 16, 2, 256, 16, 32, 128, 128, 4, 8, 512, 512, 1152, 16);

    /// <inheritdoc/>
    public override string Family => Adapters.Families.Qwen35;
    /// <inheritdoc/>
    public override int MinLayers => Interval;

    /// <inheritdoc/>
    public override SynthModel WithHidden(int hidden)
    {
        double f = (double)hidden / Release.Hidden;
        int lk = Math.Max(1, (int)Math.Round(Release.LkHeads * f));
        return this with
        {
            Hidden = hidden, Heads = Math.Max(1, (int)Math.Round(Release.Heads * f)), KvHeads = Math.Max(1, (int)Math.Round(Release.KvHeads * f)),
            HeadDim = Release.HeadDim, LkHeads = lk, LvHeads = 2 * lk, LkDim = Release.LkDim, LvDim = Release.LvDim,
            MoeInter = Scale(Release.MoeInter, f, 32), SharedInter = Scale(Release.SharedInter, f, 32),
            VisHidden = Math.Min(Release.VisHidden, Math.Max(32, hidden / 2)), Patch = Release.Patch,
        };
    }

    // rotary pairs (head_dim * 0.25 / 2) split over t/h/w as the release does: 32 -> [11, 11, 10]
    static int[] MropeSection(int pairs)
    {
        int a = (pairs + 2) / 3;
        return new[] { a, a, pairs - 2 * a };
    }

    string LayerType(int i) => (i + 1) % Interval == 0 ? "full_attention" : "linear_attention";

    /// <inheritdoc/>
    internal override bool FusedExperts(LayerContext layer) => !Fp8 && !layer.IsMtp; // as the BF16 release: MTP experts stay per expert

    /// <inheritdoc/>
    internal override IEnumerable<(string Name, SynthStorage Storage)> Carried()
    {
        int H = Hidden, vh = VisHidden;
        yield return ("model.visual.patch_embed.proj.weight", SynthStorage.Bf16(0.02, vh, 3, 2, Patch, Patch));
        yield return ("model.visual.patch_embed.proj.bias", SynthStorage.Bf16(0.02, vh));
        yield return ("model.visual.blocks.0.norm1.weight", SynthStorage.Norm(vh));
        yield return ("model.visual.blocks.0.attn.qkv.weight", SynthStorage.Bf16(0.02, 3 * vh, vh));
        yield return ("model.visual.blocks.0.attn.qkv.bias", SynthStorage.Bf16(0.02, 3 * vh));
        yield return ("model.visual.merger.linear_fc2.weight", SynthStorage.Bf16(0.02, H, vh));
    }

    /// <inheritdoc/>
    internal override SynthStorage? StorageOf(string local, LayerContext layer)
    {
        int H = Hidden, E = Experts, mi = MoeInter, si = SharedInter, kd = LkHeads * LkDim, vd = LvHeads * LvDim;
        // the projections: FP8 with BF16 block scales in the FP8 release (not the family's default F32), else BF16
        SynthStorage Proj(long rows, long cols) => Fp8 ? SynthStorage.Fp8(rows, cols, DType.BF16) : SynthStorage.Bf16(0.02, rows, cols);
        return local switch
        {
            "model.language_model.embed_tokens.weight" or "lm_head.weight" => SynthStorage.Bf16(0.02, Vocab, H),
            "model.language_model.norm.weight" or "mtp.norm.weight" or "mtp.pre_fc_norm_embedding.weight" or "mtp.pre_fc_norm_hidden.weight"
                or "input_layernorm.weight" or "post_attention_layernorm.weight" => SynthStorage.Norm(H),
            "mtp.fc.weight" => SynthStorage.Bf16(0.02, H, 2 * H),
            "self_attn.q_proj.weight" => Proj(Heads * HeadDim * 2, H), // query and output gate
            "self_attn.k_proj.weight" or "self_attn.v_proj.weight" => Proj(KvHeads * HeadDim, H),
            "self_attn.o_proj.weight" => Proj(H, Heads * HeadDim),
            "self_attn.q_norm.weight" or "self_attn.k_norm.weight" => SynthStorage.Norm(HeadDim),
            "linear_attn.in_proj_qkv.weight" => Proj(2 * kd + vd, H),
            "linear_attn.in_proj_z.weight" => Proj(vd, H),
            "linear_attn.in_proj_b.weight" or "linear_attn.in_proj_a.weight" => SynthStorage.Bf16(0.02, LvHeads, H),
            "linear_attn.conv1d.weight" => SynthStorage.Bf16(0.3, 2 * kd + vd, 1, Conv),
            "linear_attn.A_log" => SynthStorage.F32(1.0, LvHeads),
            "linear_attn.dt_bias" => SynthStorage.Bf16(1.0, LvHeads),
            "linear_attn.norm.weight" => SynthStorage.Norm(LvDim),
            "linear_attn.out_proj.weight" => Proj(H, vd),
            "mlp.gate.weight" => SynthStorage.Bf16(0.02, E, H),
            "mlp.experts.gate_up_proj" => SynthStorage.Bf16(0.02, E, 2 * mi, H),
            "mlp.experts.down_proj" => SynthStorage.Bf16(0.02, E, H, mi),
            "mlp.experts.{e}.gate_proj.weight" or "mlp.experts.{e}.up_proj.weight" => Proj(mi, H),
            "mlp.experts.{e}.down_proj.weight" => Proj(H, mi),
            "mlp.shared_expert.gate_proj.weight" or "mlp.shared_expert.up_proj.weight" => Proj(si, H),
            "mlp.shared_expert.down_proj.weight" => Proj(H, si),
            "mlp.shared_expert_gate.weight" => SynthStorage.Bf16(0.02, 1, H),
            _ => null,
        };
    }

    /// <summary>With <see cref="Fp8"/>, adds the FP8 release's quantization_config, which lists every text tensor left unquantized.</summary>
    internal override JsonObject Finish(JsonObject config, IReadOnlyList<SynthTensor> text)
    {
        if (!Fp8) return config;
        var notConvert = text.Where(t => t.Fill is SynthFill.Bf16 or SynthFill.F32) // neither an FP8 weight nor its scale
            .Select(t => t.Name.EndsWith(".weight", StringComparison.Ordinal) ? t.Name[..^".weight".Length] : t.Name).ToList();
        config["quantization_config"] = Quantization(notConvert);
        return config;
    }

    /// <inheritdoc/>
    internal override JsonObject Config() // without the FP8 release's quantization_config (see Finish)
    {
        int H = Hidden, vh = VisHidden;
        JsonObject text = TextConfig();
        return new JsonObject
        {
            ["architectures"] = new JsonArray("Qwen3_5MoeForConditionalGeneration"),
            ["model_type"] = ModelTypes.Qwen35Moe,
            ["image_token_id"] = Vocab - 6,
            ["video_token_id"] = Vocab - 5,
            ["vision_start_token_id"] = Vocab - 4,
            ["vision_end_token_id"] = Vocab - 3,
            ["tie_word_embeddings"] = false,
            ["transformers_version"] = "4.57.1",
            ["text_config"] = text,
            ["vision_config"] = new JsonObject
            {
                ["model_type"] = ModelTypes.Qwen35Moe,
                ["depth"] = 1,
                ["hidden_act"] = "gelu_pytorch_tanh",
                ["hidden_size"] = vh,
                ["in_channels"] = 3,
                ["initializer_range"] = 0.02,
                ["intermediate_size"] = 2 * vh,
                ["num_heads"] = Math.Max(1, vh / 64),
                ["num_position_embeddings"] = 64,
                ["out_hidden_size"] = H,
                ["patch_size"] = Patch,
                ["spatial_merge_size"] = 1,
                ["temporal_patch_size"] = 2,
            },
        };
    }

    /// <summary>The text model's part of config.json.</summary>
    JsonObject TextConfig()
    {
        int H = Hidden, L = Layers, E = Experts;
        return new JsonObject
        {
            ["model_type"] = ModelTypes.Qwen35MoeText,
            ["attention_bias"] = false,
            ["attention_dropout"] = 0.0,
            ["attn_output_gate"] = true,
            ["bos_token_id"] = null,
            ["dtype"] = "bfloat16",
            ["eos_token_id"] = 5,
            ["full_attention_interval"] = Interval,
            ["head_dim"] = HeadDim,
            ["hidden_act"] = "silu",
            ["hidden_size"] = H,
            ["initializer_range"] = 0.02,
            ["layer_types"] = new JsonArray(Enumerable.Range(0, L).Select(i => (JsonNode?)LayerType(i)).ToArray()),
            ["linear_conv_kernel_dim"] = Conv,
            ["linear_key_head_dim"] = LkDim,
            ["linear_num_key_heads"] = LkHeads,
            ["linear_num_value_heads"] = LvHeads,
            ["linear_value_head_dim"] = LvDim,
            ["max_position_embeddings"] = 4096,
            ["moe_intermediate_size"] = MoeInter,
            ["mtp_num_hidden_layers"] = MtpDepth,
            ["mtp_use_dedicated_embeddings"] = false,
            ["num_attention_heads"] = Heads,
            ["num_experts"] = E,
            ["num_experts_per_tok"] = Math.Min(TopK, E),
            ["num_hidden_layers"] = L,
            ["num_key_value_heads"] = KvHeads,
            ["output_router_logits"] = false,
            ["partial_rotary_factor"] = 0.25,
            ["rms_norm_eps"] = 1e-06,
            ["rope_parameters"] = new JsonObject
            {
                ["mrope_interleaved"] = true,
                ["mrope_section"] = Ints(MropeSection(HeadDim / 8)),
                ["partial_rotary_factor"] = 0.25,
                ["rope_theta"] = 10000000,
                ["rope_type"] = "default",
            },
            ["router_aux_loss_coef"] = 0.001,
            ["shared_expert_intermediate_size"] = SharedInter,
            ["tie_word_embeddings"] = false,
            ["use_cache"] = true,
            ["vocab_size"] = Vocab,
        };
    }

    /// <summary>The FP8 release's quantization_config: the modules kept in BF16 listed by name.</summary>
    JsonObject Quantization(List<string> notConvert)
    {
        notConvert.Sort(StringComparer.Ordinal);
        notConvert.Add("model.visual");
        JsonObject q = Fp8QuantizationConfig();
        q["modules_to_not_convert"] = new JsonArray(notConvert.Select(n => (JsonNode?)n).ToArray());
        return q;
    }
}
