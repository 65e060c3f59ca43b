using System.Text.Json.Nodes;

namespace Mtp.Adapters.Synthetic;

/// <summary>
/// The family layout (<see cref="DeepSeekV3Synth"/>, <see cref="DeepSeekV4Synth"/>, <see cref="Qwen35Synth"/>) sized by a
/// released config.json, so that <c>mtp synth --like</c> lists the release's tensor names, shapes and dtypes without
/// describing any layout a second time: only the dimensions are read here.
/// </summary>
public static class SynthLike
{
    /// <summary>
    /// The synthetic model whose tensor list matches the checkpoint <paramref name="config"/> describes
    /// (<paramref name="configPath"/> names the file in messages).
    /// </summary>
    /// <exception cref="ArgumentException">The config's family has no synthetic layout, or a needed field is missing or not a positive integer (the message names the file and the field).</exception>
    public static SynthModel FromConfig(JsonObject config, string configPath)
    {
        string? modelType = (config["model_type"] as JsonValue)?.TryGetValue(out string? mt) == true ? mt : null;
        string family = Families.Normalize(modelType ?? "") ?? throw new ArgumentException($"{configPath}: model_type '{modelType}' is not a family synth knows ({string.Join(", ", SynthModel.Families)})");
        var text = config["text_config"] as JsonObject ?? config;
        int Int(string key, int? fallback = null)
        {
            if (text[key] is JsonValue v && v.TryGetValue(out int x) && x >= 0) return x;
            if (text[key] is JsonValue d && d.TryGetValue(out double y) && y >= 0 && y == Math.Floor(y) && y <= int.MaxValue) return (int)y;
            return fallback ?? throw new ArgumentException($"{configPath}: '{key}' is missing or not a non-negative integer");
        }
        switch (family)
        {
            case Families.DeepSeekV3:
            case Families.DeepSeekV32:
            {
                int routed = Int("n_routed_experts");
                bool v32 = family == Families.DeepSeekV32;
                return (v32 ? DeepSeekV3Synth.ReleaseV32 : DeepSeekV3Synth.Release) with
                {
                    Hidden = Int("hidden_size"), Layers = Int("num_hidden_layers"), Experts = routed, Vocab = Int("vocab_size"),
                    MtpDepth = Int("num_nextn_predict_layers", 0), Heads = Int("num_attention_heads"), QLora = Int("q_lora_rank"),
                    KvLora = Int("kv_lora_rank"), Nope = Int("qk_nope_head_dim"), Rope = Int("qk_rope_head_dim"), VHead = Int("v_head_dim"),
                    Inter = Int("intermediate_size"), MoeInter = Int("moe_intermediate_size"), Shared = Int("n_shared_experts", 1),
                    TopK = Int("num_experts_per_tok"), DenseLayers = Int("first_k_dense_replace", 0),
                    IndexHeads = v32 ? Int("index_n_heads") : 0, IndexHeadDim = v32 ? Int("index_head_dim") : 0,
                };
            }
            case Families.DeepSeekV4:
            {
                int layers = Int("num_hidden_layers");
                int[]? ratios = (text["compress_ratios"] as JsonArray)?.Select((n, i) =>
                    n is JsonValue v && v.TryGetValue(out int r) && r >= 0 ? r : throw new ArgumentException($"{configPath}: compress_ratios[{i}] is not a non-negative integer")).ToArray();
                if (ratios is not null && ratios.Length < layers) throw new ArgumentException($"{configPath}: compress_ratios has {ratios.Length} entries for {layers} layers");
                return DeepSeekV4Synth.Release with
                {
                    Hidden = Int("hidden_size"), Layers = layers, Experts = Int("n_routed_experts"), Vocab = Int("vocab_size"),
                    MtpDepth = Int("num_nextn_predict_layers", 0), Heads = Int("num_attention_heads"), HeadDim = Int("head_dim"),
                    Rope = Int("qk_rope_head_dim"), QLora = Int("q_lora_rank"), OGroups = Int("o_groups"), OLora = Int("o_lora_rank"),
                    MoeInter = Int("moe_intermediate_size"), TopK = Int("num_experts_per_tok"), Hc = Int("hc_mult"),
                    IndexHeads = Int("index_n_heads"), IndexHeadDim = Int("index_head_dim"), Window = Int("sliding_window"),
                    Ratios = ratios, HashLayerCount = Int("num_hash_layers", 0), Tid2EidI64 = true, // the released tensor tables store tid2eid as I64
                };
            }
            case Families.Qwen35:
            {
                bool fp8 = (config["quantization_config"] ?? text["quantization_config"]) is JsonObject;
                var vision = config["vision_config"] as JsonObject;
                int VisionInt(string key, int fallback) => vision?[key] is JsonValue v && v.TryGetValue(out int x) && x > 0 ? x : fallback;
                return Qwen35Synth.Release with
                {
                    Hidden = Int("hidden_size"), Layers = Int("num_hidden_layers"), Experts = Int("num_experts"), Vocab = Int("vocab_size"),
                    MtpDepth = Int("mtp_num_hidden_layers", Int("num_nextn_predict_layers", 0)), Interval = Int("full_attention_interval", 4),
                    Heads = Int("num_attention_heads"), KvHeads = Int("num_key_value_heads"), HeadDim = Int("head_dim"),
                    LkHeads = Int("linear_num_key_heads"), LvHeads = Int("linear_num_value_heads"), LkDim = Int("linear_key_head_dim"),
                    LvDim = Int("linear_value_head_dim"), Conv = Int("linear_conv_kernel_dim", 4), TopK = Int("num_experts_per_tok"),
                    MoeInter = Int("moe_intermediate_size"), SharedInter = Int("shared_expert_intermediate_size"),
                    VisHidden = VisionInt("hidden_size", Qwen35Synth.Release.VisHidden), Patch = VisionInt("patch_size", Qwen35Synth.Release.Patch), Fp8 = fp8,
                };
            }
            case Families.Glm45:
                return Glm45Synth.Release with
                {
                    Hidden = Int("hidden_size"), Layers = Int("num_hidden_layers"), Experts = Int("n_routed_experts"), Vocab = Int("vocab_size"),
                    MtpDepth = Int("num_nextn_predict_layers", 0), Heads = Int("num_attention_heads"), KvHeads = Int("num_key_value_heads"),
                    HeadDim = Int("head_dim"), Inter = Int("intermediate_size"), MoeInter = Int("moe_intermediate_size"),
                    TopK = Int("num_experts_per_tok"), FirstDense = Int("first_k_dense_replace", Glm45Family.DefaultFirstDense),
                    QkNorm = ConfigValues.True(text, "use_qk_norm"), Bias = ConfigValues.True(text, "attention_bias"),
                };
            default:
                throw new ArgumentException($"{configPath}: synth has no layout for {family} (it makes {string.Join(", ", SynthModel.Families)})");
        }
    }
}
