using System.Globalization;
using System.Text.Json.Nodes;
using Mtp.Adapters;

namespace Mtp.Model;

/// <summary>
/// The subset of a Hugging Face DeepSeek-V3 <c>config.json</c> the model uses, validated. It also describes the families
/// that share DeepSeek-V3's model around another attention (GLM-4.5: <see cref="Gqa"/>, read by <c>Glm45Config</c>).
/// </summary>
internal sealed record DeepSeekV3Config
{
    /// <summary>The family this config describes (DeepSeek-V3 unless a reader of another family set it).</summary>
    public FamilyIdentity Family { get; init; } = FamilyRegistry.DeepSeekV3;
    /// <summary>Grouped-query attention in place of MLA (GLM-4.5); null: MLA, whose fields below then apply.</summary>
    public GqaAttentionConfig? Gqa { get; init; }
    /// <summary>DeepSeek-V3.2's sparse-attention indexer in every layer's MLA; null: dense attention (DeepSeek-V3).</summary>
    public IndexerConfig? Indexer { get; init; }

    /// <summary>vocab_size.</summary>
    public required int VocabSize { get; init; }
    /// <summary>hidden_size.</summary>
    public required int HiddenSize { get; init; }
    /// <summary>intermediate_size (dense MLP layers).</summary>
    public required int IntermediateSize { get; init; }
    /// <summary>moe_intermediate_size (each routed / shared expert).</summary>
    public required int MoeIntermediateSize { get; init; }
    /// <summary>num_hidden_layers (main model, MTP not included).</summary>
    public required int NumHiddenLayers { get; init; }
    /// <summary>num_attention_heads.</summary>
    public required int NumAttentionHeads { get; init; }
    /// <summary>n_routed_experts.</summary>
    public required int NRoutedExperts { get; init; }
    /// <summary>n_shared_experts.</summary>
    public required int NSharedExperts { get; init; }
    /// <summary>num_experts_per_tok.</summary>
    public required int NumExpertsPerTok { get; init; }
    /// <summary>n_group.</summary>
    public required int NGroup { get; init; }
    /// <summary>topk_group.</summary>
    public required int TopkGroup { get; init; }
    /// <summary>routed_scaling_factor.</summary>
    public required double RoutedScalingFactor { get; init; }
    /// <summary>norm_topk_prob.</summary>
    public required bool NormTopkProb { get; init; }
    /// <summary>first_k_dense_replace.</summary>
    public required int FirstKDenseReplace { get; init; }
    /// <summary>q_lora_rank (null: plain q_proj).</summary>
    public required int? QLoraRank { get; init; }
    /// <summary>kv_lora_rank.</summary>
    public required int KvLoraRank { get; init; }
    /// <summary>qk_nope_head_dim.</summary>
    public required int QkNopeHeadDim { get; init; }
    /// <summary>qk_rope_head_dim.</summary>
    public required int QkRopeHeadDim { get; init; }
    /// <summary>v_head_dim.</summary>
    public required int VHeadDim { get; init; }
    /// <summary>rms_norm_eps.</summary>
    public required double RmsNormEps { get; init; }
    /// <summary>rope_theta.</summary>
    public required double RopeTheta { get; init; }
    /// <summary>rope_interleave (default true: DeepSeek's released weights use adjacent-pair rotation).</summary>
    public bool RopeInterleave { get; init; } = true;
    /// <summary>YaRN scaling, or null for plain RoPE.</summary>
    public YarnScaling? Yarn { get; init; }
    /// <summary>num_nextn_predict_layers (MTP depth D).</summary>
    public required int NumNextnPredictLayers { get; init; }

    /// <summary>qk_nope_head_dim + qk_rope_head_dim.</summary>
    public int QkHeadDim => QkNopeHeadDim + QkRopeHeadDim;

    /// <summary>Whether main layer <paramref name="i"/> is an MoE layer (MTP blocks always are).</summary>
    public bool IsMoeLayer(int i) => i >= FirstKDenseReplace;

    /// <summary>
    /// Values taken for MoE keys a config.json leaves out: those of transformers' <c>DeepseekV3Config</c> and of
    /// DeepSeek's own configuration_deepseek.py, which agree (the released configs set every one of them; a config without
    /// them means the same model to transformers, vLLM and SGLang, which build on those classes).
    /// </summary>
    public static class Defaults
    {
        /// <summary>n_shared_experts.</summary>
        public const int NSharedExperts = 1;
        /// <summary>routed_scaling_factor.</summary>
        public const double RoutedScalingFactor = 2.5;
        /// <summary>n_group.</summary>
        public const int NGroup = 8;
        /// <summary>topk_group.</summary>
        public const int TopkGroup = 4;
        /// <summary>first_k_dense_replace.</summary>
        public const int FirstKDenseReplace = 3;
    }

    /// <summary>Reads and validates a config.json object (a model_type of <see cref="FamilyRegistry.DeepSeekV3"/>); missing routing keys take <see cref="Defaults"/>.</summary>
    public static DeepSeekV3Config FromJson(JsonObject json)
    {
        var reader = new ConfigReader(json);
        var problems = reader.Problems;
        string? modelType = json["model_type"]?.GetValue<string>();
        var family = FamilyRegistry.ByModelType(modelType);
        if (family == FamilyRegistry.Glm45) return Glm45Config.FromJson(json);
        if (family != FamilyRegistry.DeepSeekV3 && family != FamilyRegistry.DeepSeekV32 && family != FamilyRegistry.Glm5)
            throw new ModelConfigException($"config.json: model_type is '{modelType}', expected '{FamilyRegistry.DeepSeekV3.ModelType}', '{FamilyRegistry.DeepSeekV32.ModelType}' or '{FamilyRegistry.Glm5.ModelType}'");
        // GLM-5 (glm_moe_dsa) is DeepSeek-V3.2's decoder under GLM's name (transformers builds every class of it on V3.2's).
        bool v32 = family == FamilyRegistry.DeepSeekV32 || family == FamilyRegistry.Glm5;
        if (json["indexer_types"] is JsonArray kinds && kinds.Any(k => k?.GetValue<string>() != "full"))
            problems.Add("indexer_types with 'shared' layers (reusing an earlier layer's top-k) are not supported");
        if (json["quantization_config"] is not null)
            problems.Add("quantization_config is present: dequantize the checkpoint (mtp convert) before training");
        int Int(string k, int? def = null) => reader.Int(k, def);
        double Dbl(string k, double? def = null) => reader.Dbl(k, def);
        string? Str(string k) => json[k]?.GetValue<string>();
        if (Str("scoring_func") is string sf && sf != "sigmoid") problems.Add($"scoring_func '{sf}' is not supported (sigmoid only)");
        if (Str("topk_method") is string tm && tm != "noaux_tc") problems.Add($"topk_method '{tm}' is not supported (noaux_tc only)");
        if (Int("moe_layer_freq", 1) != 1) problems.Add("moe_layer_freq other than 1 is not supported");
        if (json["tie_word_embeddings"]?.GetValue<bool>() == true) problems.Add("tie_word_embeddings=true is not supported (DeepSeek-V3 has a separate lm_head)");
        var yarn = YarnScaling.Read(json, problems, originalDefault: 4096, withMscale: true);
        var cfg = new DeepSeekV3Config
        {
            Family = family,
            Indexer = v32 ? new IndexerConfig(Int("index_n_heads"), Int("index_head_dim"), Int("index_topk", 2048),
                json["indexer_rope_interleave"]?.GetValue<bool>() ?? family == FamilyRegistry.Glm5) : null,
            VocabSize = Int("vocab_size"),
            HiddenSize = Int("hidden_size"),
            IntermediateSize = Int("intermediate_size"),
            MoeIntermediateSize = Int("moe_intermediate_size"),
            NumHiddenLayers = Int("num_hidden_layers"),
            NumAttentionHeads = Int("num_attention_heads"),
            NRoutedExperts = Int("n_routed_experts"),
            NSharedExperts = Int("n_shared_experts", Defaults.NSharedExperts),
            NumExpertsPerTok = Int("num_experts_per_tok"),
            NGroup = Int("n_group", Defaults.NGroup),
            TopkGroup = Int("topk_group", Defaults.TopkGroup),
            RoutedScalingFactor = Dbl("routed_scaling_factor", Defaults.RoutedScalingFactor),
            NormTopkProb = json["norm_topk_prob"]?.GetValue<bool>() ?? true,
            FirstKDenseReplace = Int("first_k_dense_replace", Defaults.FirstKDenseReplace),
            QLoraRank = json["q_lora_rank"] is JsonNode q ? (int)ConfigReader.Num(q) : null,
            KvLoraRank = Int("kv_lora_rank"),
            QkNopeHeadDim = Int("qk_nope_head_dim"),
            QkRopeHeadDim = Int("qk_rope_head_dim"),
            VHeadDim = Int("v_head_dim"),
            RmsNormEps = Dbl("rms_norm_eps", 1e-6),
            RopeTheta = Dbl("rope_theta", 10000),
            RopeInterleave = json["rope_interleave"]?.GetValue<bool>() ?? true,
            Yarn = yarn,
            NumNextnPredictLayers = Int("num_nextn_predict_layers", 0),
        };
        if (problems.Count == 0)
        {
            cfg.CheckRouting(problems);
            if (cfg.QkRopeHeadDim % 2 != 0) problems.Add("qk_rope_head_dim must be even");
            if (cfg.Indexer is { } ix && (cfg.QLoraRank is null || ix.HeadDim < cfg.QkRopeHeadDim || ix.TopK < 1 || ix.Heads < 1))
                problems.Add("DeepSeek-V3.2's indexer needs q_lora_rank, index_head_dim >= qk_rope_head_dim, index_topk and index_n_heads >= 1");
        }
        if (problems.Count > 0) throw new ModelConfigException("config.json cannot be trained: " + string.Join("; ", problems));
        return cfg;
    }

    /// <summary>Checks the MoE routing fields every family of this model shares; adds to <paramref name="problems"/>.</summary>
    internal void CheckRouting(List<string> problems)
    {
        if (NRoutedExperts % NGroup != 0) problems.Add("n_routed_experts must be divisible by n_group");
        if (TopkGroup > NGroup) problems.Add("topk_group > n_group");
        if (NumExpertsPerTok > TopkGroup * (NRoutedExperts / NGroup)) problems.Add("num_experts_per_tok exceeds the experts in the kept groups");
        if (NRoutedExperts / NGroup < 2 && NGroup > 1) problems.Add("group-limited routing needs at least 2 experts per group");
    }

    /// <summary>Reads <c>config.json</c> from a checkpoint directory.</summary>
    public static DeepSeekV3Config Load(string dir)
    {
        return FromJson(ConfigReader.Read(dir));
    }


    /// <summary>Formats a double for messages.</summary>
    internal static string F(double d) => d.ToString("G6", CultureInfo.InvariantCulture);
}
