using System.Globalization;
using System.Text.Json.Nodes;
using Mtp.Adapters;

namespace Mtp.Model;

/// <summary>The subset of a Hugging Face DeepSeek-V4 <c>config.json</c> (model_type deepseek_v4) the model uses, validated.</summary>
public sealed record DeepSeekV4Config
{
    /// <summary>vocab_size.</summary>
    public required int VocabSize { get; init; }
    /// <summary>hidden_size.</summary>
    public required int HiddenSize { get; init; }
    /// <summary>num_hidden_layers (main model, MTP not included).</summary>
    public required int NumHiddenLayers { get; init; }
    /// <summary>num_attention_heads.</summary>
    public required int NumAttentionHeads { get; init; }
    /// <summary>head_dim (query heads and the single shared KV head; key = value).</summary>
    public required int HeadDim { get; init; }
    /// <summary>qk_rope_head_dim: the LAST rope dims of each head are rotated.</summary>
    public required int QkRopeHeadDim { get; init; }
    /// <summary>q_lora_rank.</summary>
    public required int QLoraRank { get; init; }
    /// <summary>o_groups.</summary>
    public required int OGroups { get; init; }
    /// <summary>o_lora_rank.</summary>
    public required int OLoraRank { get; init; }
    /// <summary>sliding_window (keys j with i - window &lt; j ≤ i).</summary>
    public required int SlidingWindow { get; init; }
    /// <summary>compress_ratios, one per layer including the MTP layers (missing entries are 0).</summary>
    public required int[] CompressRatios { get; init; }
    /// <summary>compress_rope_theta (rope base of layers with a compressor).</summary>
    public required double CompressRopeTheta { get; init; }
    /// <summary>rope_theta (rope base of pure sliding-window layers, no YaRN).</summary>
    public required double RopeTheta { get; init; }
    /// <summary>YaRN scaling applied to compressed layers' rope (no mscale), or null.</summary>
    public YarnScaling? Yarn { get; init; }
    /// <summary>index_n_heads.</summary>
    public required int IndexNHeads { get; init; }
    /// <summary>index_head_dim.</summary>
    public required int IndexHeadDim { get; init; }
    /// <summary>index_topk.</summary>
    public required int IndexTopk { get; init; }
    /// <summary>hc_mult (parallel residual streams).</summary>
    public required int HcMult { get; init; }
    /// <summary>hc_sinkhorn_iters.</summary>
    public required int HcSinkhornIters { get; init; }
    /// <summary>hc_eps.</summary>
    public required double HcEps { get; init; }
    /// <summary>n_routed_experts.</summary>
    public required int NRoutedExperts { get; init; }
    /// <summary>n_shared_experts.</summary>
    public required int NSharedExperts { get; init; }
    /// <summary>num_experts_per_tok.</summary>
    public required int NumExpertsPerTok { get; init; }
    /// <summary>moe_intermediate_size.</summary>
    public required int MoeIntermediateSize { get; init; }
    /// <summary>num_hash_layers: the first layers route by token id (tid2eid).</summary>
    public required int NumHashLayers { get; init; }
    /// <summary>scoring_func: sqrtsoftplus (V4), sigmoid or softmax.</summary>
    public required string ScoringFunc { get; init; }
    /// <summary>
    /// norm_topk_prob, as read. The router does not consult it: DeepSeek's V4 inference code has no such option and
    /// renormalises every non-softmax score set (see <see cref="V4Gate"/>).
    /// </summary>
    public required bool NormTopkProb { get; init; }
    /// <summary>routed_scaling_factor (1.5 when absent, transformers' default).</summary>
    public required double RoutedScalingFactor { get; init; }
    /// <summary>swiglu_limit (0: no clamp).</summary>
    public required double SwigluLimit { get; init; }
    /// <summary>rms_norm_eps.</summary>
    public required double RmsNormEps { get; init; }
    /// <summary>num_nextn_predict_layers (MTP depth D).</summary>
    public required int NumNextnPredictLayers { get; init; }

    /// <summary>Compress ratio of layer <paramref name="layer"/> (main layers first, then MTP depths at L+k).</summary>
    public int CompressRatio(int layer) => layer < CompressRatios.Length ? CompressRatios[layer] : 0;

    /// <summary>Whether layer <paramref name="layer"/> routes by token id.</summary>
    public bool IsHashLayer(int layer) => layer < NumHashLayers;

    /// <summary>Reads and validates a config.json object (model_type deepseek_v4).</summary>
    public static DeepSeekV4Config FromJson(JsonObject json)
    {
        var reader = new ConfigReader(json);
        var problems = reader.Problems;
        string? modelType = json["model_type"]?.GetValue<string>();
        if (FamilyRegistry.ByModelType(modelType) != FamilyRegistry.DeepSeekV4)
            throw new ModelConfigException($"config.json: model_type is '{modelType}', expected '{FamilyRegistry.DeepSeekV4.ModelType}'");
        if (json["quantization_config"] is not null)
            problems.Add("quantization_config is present: dequantize the checkpoint (mtp convert) before training");
        int Int(string k, int? def = null) => reader.Int(k, def);
        double Dbl(string k, double? def = null) => reader.Dbl(k, def);
        string sf = json["scoring_func"]?.GetValue<string>() ?? "sqrtsoftplus";
        if (sf is not ("sqrtsoftplus" or "sigmoid" or "softmax")) problems.Add($"scoring_func '{sf}' is not supported (sqrtsoftplus, sigmoid, softmax)");
        if (json["tie_word_embeddings"]?.GetValue<bool>() == true) problems.Add("tie_word_embeddings=true is not supported (DeepSeek-V4 has a separate head)");
        var yarn = YarnScaling.Read(json, problems, originalDefault: 0, withMscale: false);
        int[] ratios = json["compress_ratios"] is JsonArray ca ? ca.Select(n => (int)ConfigReader.Num(n!)).ToArray() : Array.Empty<int>();
        var cfg = new DeepSeekV4Config
        {
            VocabSize = Int("vocab_size"),
            HiddenSize = Int("hidden_size"),
            NumHiddenLayers = Int("num_hidden_layers"),
            NumAttentionHeads = Int("num_attention_heads"),
            HeadDim = Int("head_dim"),
            QkRopeHeadDim = Int("qk_rope_head_dim"),
            QLoraRank = Int("q_lora_rank"),
            OGroups = Int("o_groups", 1),
            OLoraRank = Int("o_lora_rank"),
            SlidingWindow = Int("sliding_window"),
            CompressRatios = ratios,
            CompressRopeTheta = Dbl("compress_rope_theta", 160000),
            RopeTheta = Dbl("rope_theta", 10000),
            Yarn = yarn,
            IndexNHeads = Int("index_n_heads", 0),
            IndexHeadDim = Int("index_head_dim", 0),
            IndexTopk = Int("index_topk", 0),
            HcMult = Int("hc_mult", 1),
            HcSinkhornIters = Int("hc_sinkhorn_iters", 20),
            HcEps = Dbl("hc_eps", 1e-6),
            NRoutedExperts = Int("n_routed_experts"),
            NSharedExperts = Int("n_shared_experts", 1),
            NumExpertsPerTok = Int("num_experts_per_tok"),
            MoeIntermediateSize = Int("moe_intermediate_size"),
            NumHashLayers = Int("num_hash_layers", 0),
            ScoringFunc = sf,
            NormTopkProb = json["norm_topk_prob"]?.GetValue<bool>() ?? true,
            RoutedScalingFactor = Dbl("routed_scaling_factor", 1.5), // transformers' DeepseekV4Config default
            SwigluLimit = Dbl("swiglu_limit", 0),
            RmsNormEps = Dbl("rms_norm_eps", 1e-6),
            NumNextnPredictLayers = Int("num_nextn_predict_layers", 0),
        };
        if (problems.Count == 0)
        {
            if (cfg.QkRopeHeadDim % 2 != 0 || cfg.QkRopeHeadDim > cfg.HeadDim) problems.Add("qk_rope_head_dim must be even and at most head_dim");
            if (cfg.NumAttentionHeads * cfg.HeadDim % cfg.OGroups != 0) problems.Add("num_attention_heads * head_dim must be divisible by o_groups");
            if (cfg.NumExpertsPerTok > cfg.NRoutedExperts) problems.Add("num_experts_per_tok exceeds n_routed_experts");
            if (cfg.NSharedExperts > 1) problems.Add("n_shared_experts > 1 is not supported (DeepSeek-V4 has one shared expert)");
            for (int i = 0; i < cfg.NumHiddenLayers + cfg.NumNextnPredictLayers; i++)
            {
                int r = cfg.CompressRatio(i);
                if (r < 0) problems.Add($"compress_ratios[{i}] is negative");
                if (r == 4 && (cfg.IndexNHeads <= 0 || cfg.IndexHeadDim <= 0 || cfg.IndexTopk <= 0)) problems.Add($"layer {i} has compress ratio 4 but index_n_heads/index_head_dim/index_topk are not set");
                if (r == 4 && cfg.IndexHeadDim < cfg.QkRopeHeadDim) problems.Add("index_head_dim must be at least qk_rope_head_dim");
            }
            if (cfg.HcMult < 1) problems.Add("hc_mult must be at least 1");
        }
        if (problems.Count > 0) throw new ModelConfigException("config.json cannot be trained: " + string.Join("; ", problems));
        return cfg;
    }

    /// <summary>Reads <c>config.json</c> from a checkpoint directory.</summary>
    public static DeepSeekV4Config Load(string dir)
    {
        return FromJson(ConfigReader.Read(dir));
    }

}
