using System.Text.Json.Nodes;
using Mtp.SafeTensors;

namespace Mtp.Adapters.Synthetic;

/// <summary>
/// Qwen3.5-MoE (qwen3_5_moe): text under <c>model.language_model.*</c>, a few <c>model.visual.*</c>
/// tensors, hybrid Gated-DeltaNet / full-attention layers, MTP under <c>mtp.*</c>. The BF16 release has
/// fused experts in the main layers and per-expert ones in <c>mtp.layers.{j}</c>; with <see cref="Fp8"/>
/// (the FP8 release) every projection is FP8 E4M3 with a BF16 <c>weight_scale_inv</c>, experts are
/// per-expert everywhere and config.json lists <c>modules_to_not_convert</c>.
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
    public override SynthPlan Build()
    {
        Validate();
        var t = new Tensors(this);
        t.AddAll();
        JsonObject cfg = Config();
        if (Fp8) cfg["quantization_config"] = Quantization(t.NotConvert);
        return new SynthPlan(Family, t.B.Tensors, cfg);
    }

    /// <summary>The config.json of this model (without the FP8 release's quantization_config).</summary>
    JsonObject Config()
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
    static JsonObject Quantization(List<string> notConvert)
    {
        notConvert.Sort(StringComparer.Ordinal);
        notConvert.Add("model.visual");
        return new JsonObject
        {
            ["activation_scheme"] = "dynamic",
            ["fmt"] = "e4m3",
            ["quant_method"] = "fp8",
            ["weight_block_size"] = Ints(new[] { PlanBuilder.Block, PlanBuilder.Block }),
            ["modules_to_not_convert"] = new JsonArray(notConvert.Select(n => (JsonNode?)n).ToArray()),
        };
    }

    /// <summary>The tensors of one model, in write order; in the FP8 release, the names of those left unquantized.</summary>
    sealed class Tensors(Qwen35Synth m)
    {
        public readonly PlanBuilder B = new();
        public readonly List<string> NotConvert = new();
        readonly int H = m.Hidden, E = m.Experts;

        void Plain(SynthTensor t)
        {
            B.Tensors.Add(t);
            if (m.Fp8) NotConvert.Add(t.Name.EndsWith(".weight", StringComparison.Ordinal) ? t.Name[..^".weight".Length] : t.Name);
        }

        void PlainBf16(string name, double std, params long[] shape) => Plain(new(name, DType.BF16, shape, SynthFill.Bf16, 0, std));

        void Norm(string name, long n) => Plain(new(name, DType.BF16, new[] { n }, SynthFill.Bf16, 1.0, 0.1));

        void Proj(string stem, long rows, long cols)
        {
            if (m.Fp8) B.Fp8(stem, rows, cols, DType.BF16, m.Scheme.Naming); // the FP8 release stores BF16 scales
            else B.Bf16(stem + ".weight", 0.02, rows, cols);
        }

        void Moe(string p, bool fused)
        {
            int mi = m.MoeInter, si = m.SharedInter;
            PlainBf16(p + "gate.weight", 0.02, E, H);
            if (fused)
            {
                B.Bf16(p + "experts.gate_up_proj", 0.02, E, 2 * mi, H);
                B.Bf16(p + "experts.down_proj", 0.02, E, H, mi);
            }
            else
                for (int e = 0; e < E; e++)
                {
                    Proj($"{p}experts.{e}.gate_proj", mi, H);
                    Proj($"{p}experts.{e}.up_proj", mi, H);
                    Proj($"{p}experts.{e}.down_proj", H, mi);
                }
            Proj(p + "shared_expert.gate_proj", si, H);
            Proj(p + "shared_expert.up_proj", si, H);
            Proj(p + "shared_expert.down_proj", H, si);
            PlainBf16(p + "shared_expert_gate.weight", 0.02, 1, H);
        }

        void FullAttention(string a)
        {
            Proj(a + "q_proj", m.Heads * m.HeadDim * 2, H);
            Proj(a + "k_proj", m.KvHeads * m.HeadDim, H);
            Proj(a + "v_proj", m.KvHeads * m.HeadDim, H);
            Proj(a + "o_proj", H, m.Heads * m.HeadDim);
            Norm(a + "q_norm.weight", m.HeadDim);
            Norm(a + "k_norm.weight", m.HeadDim);
        }

        void LinearAttention(string a)
        {
            int kd = m.LkHeads * m.LkDim, vd = m.LvHeads * m.LvDim;
            Proj(a + "in_proj_qkv", 2 * kd + vd, H);
            Proj(a + "in_proj_z", vd, H);
            PlainBf16(a + "in_proj_b.weight", 0.02, m.LvHeads, H);
            PlainBf16(a + "in_proj_a.weight", 0.02, m.LvHeads, H);
            PlainBf16(a + "conv1d.weight", 0.3, 2 * kd + vd, 1, m.Conv);
            Plain(new(a + "A_log", DType.F32, new long[] { m.LvHeads }, SynthFill.F32, 0, 1.0));
            PlainBf16(a + "dt_bias", 1.0, m.LvHeads);
            Norm(a + "norm.weight", m.LvDim);
            Proj(a + "out_proj", H, vd);
        }

        void Layer(string p, bool full, bool fused)
        {
            Norm(p + "input_layernorm.weight", H);
            Norm(p + "post_attention_layernorm.weight", H);
            if (full) FullAttention(p + "self_attn.");
            else LinearAttention(p + "linear_attn.");
            Moe(p + "mlp.", fused);
        }

        public void AddAll()
        {
            int vh = m.VisHidden, patch = m.Patch;
            B.Bf16("model.visual.patch_embed.proj.weight", 0.02, vh, 3, 2, patch, patch);
            B.Bf16("model.visual.patch_embed.proj.bias", 0.02, vh);
            B.Norm("model.visual.blocks.0.norm1.weight", vh);
            B.Bf16("model.visual.blocks.0.attn.qkv.weight", 0.02, 3 * vh, vh);
            B.Bf16("model.visual.blocks.0.attn.qkv.bias", 0.02, 3 * vh);
            B.Bf16("model.visual.merger.linear_fc2.weight", 0.02, H, vh);
            PlainBf16("model.language_model.embed_tokens.weight", 0.02, m.Vocab, H);
            for (int i = 0; i < m.Layers; i++) Layer($"model.language_model.layers.{i}.", m.LayerType(i) == "full_attention", fused: !m.Fp8);
            Norm("model.language_model.norm.weight", H);
            PlainBf16("lm_head.weight", 0.02, m.Vocab, H);
            if (m.MtpDepth == 0) return;
            PlainBf16("mtp.fc.weight", 0.02, H, 2 * H);
            Norm("mtp.pre_fc_norm_embedding.weight", H);
            Norm("mtp.pre_fc_norm_hidden.weight", H);
            for (int j = 0; j < m.MtpDepth; j++) Layer($"mtp.layers.{j}.", full: true, fused: false);
            Norm("mtp.norm.weight", H);
        }
    }
}
