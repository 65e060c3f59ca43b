using System.Text.Json.Nodes;
using Mtp.Adapters;

namespace Mtp.Model;

/// <summary>GLM-4.5's attention: grouped-query heads with optional q/k/v biases and per-head q/k RMSNorms, partial RoPE.</summary>
/// <param name="NumKeyValueHeads">num_key_value_heads.</param>
/// <param name="HeadDim">head_dim.</param>
/// <param name="Bias">attention_bias: q_proj, k_proj and v_proj carry biases (o_proj never does).</param>
/// <param name="QkNorm">use_qk_norm: RMSNorm over each head's query and key, before RoPE.</param>
internal sealed record GqaAttentionConfig(int NumKeyValueHeads, int HeadDim, bool Bias, bool QkNorm);

/// <summary>
/// Reads a GLM-4.5 (<c>glm4_moe</c>) config.json into the DeepSeek-V3 model's config: the same decoder (dense then MoE
/// layers, sigmoid noaux_tc routing with group-limited top-k and routed scaling, shared experts) and the same MTP
/// depths, with <see cref="GqaAttentionConfig"/> attention. RoPE rotates the first head_dim * partial_rotary_factor
/// dims of each head in halves (transformers' <c>Glm4MoeAttention</c> / <c>apply_rotary_pos_emb</c>); the softmax scale
/// is 1/sqrt(head_dim). Missing keys take transformers' <c>Glm4MoeConfig</c> defaults.
/// </summary>
internal static class Glm45Config
{
    /// <summary>transformers' <c>Glm4MoeConfig</c> defaults for the keys a config.json may leave out.</summary>
    public static class Defaults
    {
        /// <summary>first_k_dense_replace.</summary>
        public const int FirstKDenseReplace = 1;
        /// <summary>n_shared_experts.</summary>
        public const int NSharedExperts = 1;
        /// <summary>routed_scaling_factor.</summary>
        public const double RoutedScalingFactor = 1.0;
        /// <summary>partial_rotary_factor.</summary>
        public const double PartialRotaryFactor = 0.5;
        /// <summary>rms_norm_eps.</summary>
        public const double RmsNormEps = 1e-5;
    }

    /// <summary>Reads and validates a <c>glm4_moe</c> config.json object.</summary>
    public static DeepSeekV3Config FromJson(JsonObject json)
    {
        var reader = new ConfigReader(json);
        var problems = reader.Problems;
        if (json["quantization_config"] is not null)
            problems.Add("quantization_config is present: dequantize the checkpoint (mtp convert) before training");
        if (json["tie_word_embeddings"]?.GetValue<bool>() == true) problems.Add("tie_word_embeddings=true is not supported (GLM-4.5 has a separate lm_head)");
        if (json["rope_scaling"] is JsonObject) problems.Add("rope_scaling is not supported for GLM-4.5 (the releases use plain RoPE)");
        int Int(string k, int? def = null) => reader.Int(k, def);
        int heads = Int("num_attention_heads"), hidden = Int("hidden_size");
        int headDim = Int("head_dim", heads > 0 ? hidden / heads : 0);
        double partial = reader.Dbl("partial_rotary_factor", Defaults.PartialRotaryFactor);
        int rotary = (int)(headDim * partial);
        var gqa = new GqaAttentionConfig(Int("num_key_value_heads", heads), headDim,
            json["attention_bias"]?.GetValue<bool>() ?? false, json["use_qk_norm"]?.GetValue<bool>() ?? false);
        var cfg = new DeepSeekV3Config
        {
            Family = FamilyRegistry.Glm45,
            Gqa = gqa,
            VocabSize = Int("vocab_size"),
            HiddenSize = hidden,
            IntermediateSize = Int("intermediate_size"),
            MoeIntermediateSize = Int("moe_intermediate_size"),
            NumHiddenLayers = Int("num_hidden_layers"),
            NumAttentionHeads = heads,
            NRoutedExperts = Int("n_routed_experts"),
            NSharedExperts = Int("n_shared_experts", Defaults.NSharedExperts),
            NumExpertsPerTok = Int("num_experts_per_tok"),
            NGroup = Int("n_group", 1),
            TopkGroup = Int("topk_group", 1),
            RoutedScalingFactor = reader.Dbl("routed_scaling_factor", Defaults.RoutedScalingFactor),
            NormTopkProb = json["norm_topk_prob"]?.GetValue<bool>() ?? true,
            FirstKDenseReplace = Int("first_k_dense_replace", Defaults.FirstKDenseReplace),
            // MLA fields expressed for GQA: the rope part is the rotated prefix of a head, the "nope" part the rest.
            QLoraRank = null,
            KvLoraRank = 0,
            QkNopeHeadDim = headDim - rotary,
            QkRopeHeadDim = rotary,
            VHeadDim = headDim,
            RmsNormEps = reader.Dbl("rms_norm_eps", Defaults.RmsNormEps),
            RopeTheta = reader.Dbl("rope_theta", 10000),
            RopeInterleave = false,
            NumNextnPredictLayers = Int("num_nextn_predict_layers", 0),
        };
        if (problems.Count == 0)
        {
            cfg.CheckRouting(problems);
            if (rotary % 2 != 0 || rotary <= 0) problems.Add($"head_dim * partial_rotary_factor = {rotary} must be a positive even number");
            if (gqa.NumKeyValueHeads <= 0 || heads % gqa.NumKeyValueHeads != 0) problems.Add("num_attention_heads must be a multiple of num_key_value_heads");
        }
        if (problems.Count > 0) throw new ModelConfigException("config.json cannot be trained: " + string.Join("; ", problems));
        return cfg;
    }
}
