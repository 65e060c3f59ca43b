using System.Text.Json.Nodes;
using Mtp.SafeTensors;

namespace Mtp.Adapters.Synthetic;

/// <summary>
/// Dimensions of a synthetic checkpoint. Each family has a <c>Tiny</c> default (a few MB, trains in
/// seconds) and a <c>Release</c> shape (the real model's widths); <see cref="WithHidden"/> rescales the
/// widths of the release shape to another hidden size (head counts and ranks proportionally, head
/// dimensions unchanged).
/// </summary>
/// <param name="Hidden">Hidden size H.</param>
/// <param name="Layers">Main decoder layers (num_hidden_layers).</param>
/// <param name="Experts">Routed experts E.</param>
/// <param name="Vocab">Vocabulary size.</param>
/// <param name="MtpDepth">MTP depth D.</param>
public abstract record SynthModel(int Hidden, int Layers, int Experts, int Vocab, int MtpDepth)
{
    /// <summary>Family id (deepseek-v3, deepseek-v4, qwen3.5).</summary>
    public abstract string Family { get; }

    /// <summary>Fewest main layers that still show every kind of layer of the family.</summary>
    public abstract int MinLayers { get; }

    /// <summary>The tensors and config.json of this model.</summary>
    public abstract SynthPlan Build();

    /// <summary>The release shape rescaled to hidden size <paramref name="hidden"/> (other fields kept).</summary>
    public abstract SynthModel WithHidden(int hidden);

    /// <summary>Bytes per vocabulary row (embedding and head, plus copies).</summary>
    public virtual long BytesPerVocabRow => 4L * Hidden;

    /// <summary>Throws <see cref="ArgumentException"/> for dimensions the layout cannot hold.</summary>
    public virtual void Validate()
    {
        if (Hidden < 32 || Hidden % 32 != 0) throw new ArgumentException($"hidden size {Hidden} must be a positive multiple of 32");
        if (Layers < 1) throw new ArgumentException($"layers {Layers} must be at least 1");
        if (Experts < 1) throw new ArgumentException($"experts {Experts} must be at least 1");
        if (Vocab < 1) throw new ArgumentException($"vocab {Vocab} must be at least 1");
        if (MtpDepth < 0) throw new ArgumentException($"MTP depth {MtpDepth} must not be negative");
    }

    /// <summary>The model for a family id ("deepseek-v3", "deepseek-v4", "qwen3.5"), tiny or release shape.</summary>
    public static SynthModel For(string family, bool release = false, bool fp8 = false) => family switch
    {
        Adapters.Families.DeepSeekV3 => release ? DeepSeekV3Synth.Release : DeepSeekV3Synth.Tiny,
        Adapters.Families.DeepSeekV4 => release ? DeepSeekV4Synth.Release : DeepSeekV4Synth.Tiny,
        Adapters.Families.Qwen35 => (release ? Qwen35Synth.Release : Qwen35Synth.Tiny) with { Fp8 = fp8 },
        _ => throw new ArgumentException($"unknown family '{family}' (deepseek-v3, deepseek-v4, qwen3.5)"),
    };

    /// <summary>The families <see cref="For"/> knows.</summary>
    public static readonly string[] Families = { Adapters.Families.DeepSeekV3, Adapters.Families.DeepSeekV4, Adapters.Families.Qwen35 };

    /// <summary>The quantization scheme of <see cref="Family"/>.</summary>
    protected QuantScheme Scheme => FamilyRegistry.Module(Family)!.Quant;

    /// <summary><paramref name="v"/> * <paramref name="f"/> rounded to a multiple of <paramref name="m"/>, at least <paramref name="m"/>.</summary>
    protected static int Scale(int v, double f, int m) => Math.Max(m, (int)Math.Round(v * f / m) * m);

    /// <summary>Helper for JSON arrays of ints.</summary>
    protected static JsonArray Ints(IEnumerable<int> v) => new(v.Select(x => (JsonNode?)x).ToArray());
}

/// <summary>DeepSeek-V3 (also V3.1/R1): model.* names, MLA attention, FP8 with F32 weight_scale_inv, MTP at model.layers.{L+k}.</summary>
public sealed record DeepSeekV3Synth(int Hidden, int Layers, int Experts, int Vocab, int MtpDepth,
    int Heads, int QLora, int KvLora, int Nope, int Rope, int VHead, int Inter, int MoeInter, int Shared, int TopK, int? DenseLayers = null)
    : SynthModel(Hidden, Layers, Experts, Vocab, MtpDepth)
{
    /// <summary>A few-MB model.</summary>
    public static readonly DeepSeekV3Synth Tiny = new(64, 3, 4, 512, 1, 2, 64, 64, 32, 16, 32, 256, 64, 1, 2);
    /// <summary>DeepSeek-V3's release shape (671B).</summary>
    public static readonly DeepSeekV3Synth Release = new(7168, 61, 256, 129280, 1, 128, 1536, 512, 128, 64, 128, 18432, 2048, 1, 8);

    /// <inheritdoc/>
    public override string Family => Adapters.Families.DeepSeekV3;
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
        return this with
        {
            Hidden = hidden, Heads = Math.Max(1, (int)Math.Round(Release.Heads * f)), QLora = Scale(Release.QLora, f, 32),
            KvLora = Scale(Release.KvLora, f, 32), Inter = Scale(Release.Inter, f, 32), MoeInter = Scale(Release.MoeInter, f, 32),
            Nope = Release.Nope, Rope = Release.Rope, VHead = Release.VHead,
        };
    }

    /// <inheritdoc/>
    public override SynthPlan Build()
    {
        Validate();
        var b = new PlanBuilder();
        int H = Hidden, L = Layers, E = Experts;
        void Fp8(string stem, long rows, long cols) => b.Fp8(stem, rows, cols, Scheme.ScaleDType, Scheme.Naming);
        void Block(int i, bool moe)
        {
            string p = $"model.layers.{i}.";
            b.Norm(p + "input_layernorm.weight", H);
            b.Norm(p + "post_attention_layernorm.weight", H);
            string a = p + "self_attn.";
            Fp8(a + "q_a_proj", QLora, H);
            b.Norm(a + "q_a_layernorm.weight", QLora);
            Fp8(a + "q_b_proj", Heads * (Nope + Rope), QLora);
            Fp8(a + "kv_a_proj_with_mqa", KvLora + Rope, H);
            b.Norm(a + "kv_a_layernorm.weight", KvLora);
            Fp8(a + "kv_b_proj", Heads * (Nope + VHead), KvLora);
            Fp8(a + "o_proj", H, Heads * VHead);
            string m = p + "mlp.";
            if (!moe)
            {
                Fp8(m + "gate_proj", Inter, H);
                Fp8(m + "up_proj", Inter, H);
                Fp8(m + "down_proj", H, Inter);
                return;
            }
            b.Bf16(m + "gate.weight", 0.02, E, H);
            b.F32(m + "gate.e_score_correction_bias", 0.05, E);
            for (int e = 0; e < E; e++)
            {
                Fp8($"{m}experts.{e}.gate_proj", MoeInter, H);
                Fp8($"{m}experts.{e}.up_proj", MoeInter, H);
                Fp8($"{m}experts.{e}.down_proj", H, MoeInter);
            }
            int si = MoeInter * Shared;
            Fp8(m + "shared_experts.gate_proj", si, H);
            Fp8(m + "shared_experts.up_proj", si, H);
            Fp8(m + "shared_experts.down_proj", H, si);
        }

        b.Bf16("model.embed_tokens.weight", 0.02, Vocab, H);
        for (int i = 0; i < L; i++) Block(i, i >= FirstDense);
        b.Norm("model.norm.weight", H);
        b.Bf16("lm_head.weight", 0.02, Vocab, H);
        for (int k = 0; k < MtpDepth; k++)
        {
            Block(L + k, true);
            string p = $"model.layers.{L + k}.";
            b.Norm(p + "enorm.weight", H);
            b.Norm(p + "hnorm.weight", H);
            b.Bf16(p + "eh_proj.weight", 0.02, H, 2 * H);
            b.Norm(p + "shared_head.norm.weight", H);
            b.CopyOf(p + "embed_tokens.weight", "model.embed_tokens.weight");
            b.CopyOf(p + "shared_head.head.weight", "lm_head.weight");
        }
        return new SynthPlan(Family, b.Tensors, Config());
    }

    /// <summary>The config.json of this model.</summary>
    JsonObject Config()
    {
        int H = Hidden, L = Layers, E = Experts;
        int nGroup = E % 8 == 0 && E >= 16 ? 8 : E % 2 == 0 && E >= 4 ? 2 : 1; // group-limited routing scores a group by its top 2
        // Half the groups kept, as the release does, but never fewer experts than a token is routed to: a model must be
        // able to load what synth writes (8 experts in 2 groups, top-8, keeps both groups).
        int topK = Math.Min(TopK, E), perGroup = E / nGroup;
        int topkGroup = Math.Min(nGroup, Math.Max(Math.Max(1, nGroup / 2), (topK + perGroup - 1) / perGroup));
        return new JsonObject
        {
            ["architectures"] = new JsonArray("DeepseekV3ForCausalLM"),
            ["model_type"] = ModelTypes.DeepSeekV3,
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
            ["quantization_config"] = new JsonObject
            {
                ["activation_scheme"] = "dynamic",
                ["fmt"] = "e4m3",
                ["quant_method"] = "fp8",
                ["weight_block_size"] = Ints(new[] { PlanBuilder.Block, PlanBuilder.Block }),
            },
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
    }
}
