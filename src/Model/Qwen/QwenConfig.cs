using System.Globalization;
using System.Text.Json.Nodes;
using Mtp.Adapters;

namespace Mtp.Model.Qwen;

/// <summary>
/// The subset of a Qwen3.5 (<c>qwen3_5</c>, <c>qwen3_5_moe</c>; text fields nested in <c>text_config</c>) or
/// Qwen3-Next (<c>qwen3_next</c>, flat) <c>config.json</c> the model uses, validated.
/// </summary>
public sealed record QwenConfig
{
    /// <summary>True for Qwen3-Next (fused <c>in_proj_qkvz</c> / <c>in_proj_ba</c>, optional top-k renormalisation).</summary>
    public required bool IsQwen3Next { get; init; }
    /// <summary>vocab_size.</summary>
    public required int VocabSize { get; init; }
    /// <summary>hidden_size.</summary>
    public required int HiddenSize { get; init; }
    /// <summary>num_hidden_layers (main model).</summary>
    public required int NumHiddenLayers { get; init; }
    /// <summary>Per main layer: true = full attention, false = Gated DeltaNet (from layer_types or full_attention_interval).</summary>
    public required bool[] FullAttention { get; init; }
    /// <summary>num_attention_heads.</summary>
    public required int NumAttentionHeads { get; init; }
    /// <summary>num_key_value_heads.</summary>
    public required int NumKeyValueHeads { get; init; }
    /// <summary>head_dim.</summary>
    public required int HeadDim { get; init; }
    /// <summary>attn_output_gate (default true: q_proj carries query and gate interleaved per head).</summary>
    public bool AttnOutputGate { get; init; } = true;
    /// <summary>Rotary dims per head: head_dim * partial_rotary_factor.</summary>
    public required int RotaryDim { get; init; }
    /// <summary>rope_theta (rope_parameters or top level).</summary>
    public required double RopeTheta { get; init; }
    /// <summary>rms_norm_eps.</summary>
    public required double RmsNormEps { get; init; }
    /// <summary>linear_num_key_heads.</summary>
    public required int LinearNumKeyHeads { get; init; }
    /// <summary>linear_num_value_heads.</summary>
    public required int LinearNumValueHeads { get; init; }
    /// <summary>linear_key_head_dim.</summary>
    public required int LinearKeyHeadDim { get; init; }
    /// <summary>linear_value_head_dim.</summary>
    public required int LinearValueHeadDim { get; init; }
    /// <summary>linear_conv_kernel_dim.</summary>
    public required int LinearConvKernelDim { get; init; }
    /// <summary>num_experts (0: dense model).</summary>
    public required int NumExperts { get; init; }
    /// <summary>num_experts_per_tok.</summary>
    public required int NumExpertsPerTok { get; init; }
    /// <summary>moe_intermediate_size.</summary>
    public required int MoeIntermediateSize { get; init; }
    /// <summary>shared_expert_intermediate_size (0: none).</summary>
    public required int SharedExpertIntermediateSize { get; init; }
    /// <summary>intermediate_size (dense MLP layers).</summary>
    public required int IntermediateSize { get; init; }
    /// <summary>Renormalise the top-k router weights (Qwen3.5 always; Qwen3-Next norm_topk_prob).</summary>
    public required bool NormTopkProb { get; init; }
    /// <summary>decoder_sparse_step.</summary>
    public int DecoderSparseStep { get; init; } = 1;
    /// <summary>mlp_only_layers.</summary>
    public IReadOnlySet<int> MlpOnlyLayers { get; init; } = new HashSet<int>();
    /// <summary>tie_word_embeddings (no lm_head.weight in the checkpoint).</summary>
    public required bool TieWordEmbeddings { get; init; }
    /// <summary>MTP layers (mtp_num_hidden_layers / num_nextn_predict_layers; null: count the checkpoint's keys).</summary>
    public required int? MtpLayers { get; init; }

    /// <summary>linear_num_key_heads * linear_key_head_dim.</summary>
    public int LinearKeyDim => LinearNumKeyHeads * LinearKeyHeadDim;
    /// <summary>linear_num_value_heads * linear_value_head_dim.</summary>
    public int LinearValueDim => LinearNumValueHeads * LinearValueHeadDim;
    /// <summary>Channels of the depthwise convolution: q, k, v.</summary>
    public int ConvDim => 2 * LinearKeyDim + LinearValueDim;

    /// <summary>Whether main layer <paramref name="i"/> has a routed MoE MLP (MTP layers: whenever the model has experts).</summary>
    public bool IsMoeLayer(int i) => NumExperts > 0 && !MlpOnlyLayers.Contains(i) && (i + 1) % DecoderSparseStep == 0;

    /// <summary>Reads and validates a config.json object (model_type qwen3_5, qwen3_5_moe or qwen3_next).</summary>
    public static QwenConfig FromJson(JsonObject json)
    {
        string? top = json["model_type"]?.GetValue<string>();
        var tc = json["text_config"] as JsonObject ?? json;
        string? text = tc["model_type"]?.GetValue<string>();
        var families = new[] { FamilyRegistry.ByModelType(top), FamilyRegistry.ByModelType(text) };
        bool next = families.Contains(FamilyRegistry.Qwen3Next);
        bool q35 = families.Contains(FamilyRegistry.Qwen35);
        if (!next && !q35) throw new ModelConfigException($"config.json: model_type is '{top}', expected qwen3_5, qwen3_5_moe or qwen3_next");
        var reader = new ConfigReader(tc);
        var problems = reader.Problems;
        if (json["quantization_config"] is not null || tc["quantization_config"] is not null)
            problems.Add("quantization_config is present: dequantize the checkpoint (mtp convert) before training");
        int Int(string k, int? def = null) => reader.Int(k, def);
        double Dbl(string k, double? def = null) => reader.Dbl(k, def);
        bool Bool(JsonObject o, string k) => o[k] is JsonValue v && v.TryGetValue(out bool b) && b;
        var rp = tc["rope_parameters"] as JsonObject ?? tc["rope_scaling"] as JsonObject;
        if (rp?["rope_type"]?.GetValue<string>() is string rt && rt != "default")
            problems.Add($"rope_type '{rt}' is not supported (default only)");
        double theta = rp?["rope_theta"] is JsonNode th ? ConfigReader.Num(th) : Dbl("rope_theta", 10000);
        double partial = rp?["partial_rotary_factor"] is JsonNode pf ? ConfigReader.Num(pf) : Dbl("partial_rotary_factor", 1.0);
        int layers = Int("num_hidden_layers");
        int interval = Int("full_attention_interval", 4);
        bool[] full;
        if (tc["layer_types"] is JsonArray lt)
        {
            full = lt.Select(x => x?.GetValue<string>() == "full_attention").ToArray();
            var unknown = lt.Select(x => x?.GetValue<string>()).Where(s => s is not ("full_attention" or "linear_attention")).Distinct().ToList();
            if (unknown.Count > 0) problems.Add($"layer_types has unknown kinds: {string.Join(", ", unknown)}");
            if (full.Length != layers) problems.Add($"layer_types has {full.Length} entries for {layers} layers");
        }
        else full = Enumerable.Range(0, layers).Select(i => (i + 1) % Math.Max(1, interval) == 0).ToArray();
        int headDim = Int("head_dim", Int("hidden_size") / Math.Max(1, Int("num_attention_heads")));
        int? mtp = next ? (tc["num_nextn_predict_layers"] is JsonNode nn ? (int)ConfigReader.Num(nn) : null) : Int("mtp_num_hidden_layers", 0);
        if (Bool(tc, "mtp_use_dedicated_embeddings")) problems.Add("mtp_use_dedicated_embeddings=true is not supported (the MTP block shares the main embedding)");
        string? act = tc["hidden_act"]?.GetValue<string>();
        if (act is not null and not "silu") problems.Add($"hidden_act '{act}' is not supported (silu only)");
        var cfg = new QwenConfig
        {
            IsQwen3Next = next,
            VocabSize = Int("vocab_size"),
            HiddenSize = Int("hidden_size"),
            NumHiddenLayers = layers,
            FullAttention = full,
            NumAttentionHeads = Int("num_attention_heads"),
            NumKeyValueHeads = Int("num_key_value_heads"),
            HeadDim = headDim,
            AttnOutputGate = tc["attn_output_gate"] is JsonNode g ? g.GetValue<bool>() : true,
            RotaryDim = (int)(headDim * partial),
            RopeTheta = theta,
            RmsNormEps = Dbl("rms_norm_eps", 1e-6),
            LinearNumKeyHeads = Int("linear_num_key_heads"),
            LinearNumValueHeads = Int("linear_num_value_heads"),
            LinearKeyHeadDim = Int("linear_key_head_dim"),
            LinearValueHeadDim = Int("linear_value_head_dim"),
            LinearConvKernelDim = Int("linear_conv_kernel_dim", 4),
            NumExperts = Int("num_experts", 0),
            NumExpertsPerTok = Int("num_experts_per_tok", 0),
            MoeIntermediateSize = Int("moe_intermediate_size", 0),
            SharedExpertIntermediateSize = Int("shared_expert_intermediate_size", 0),
            IntermediateSize = Int("intermediate_size", 0),
            NormTopkProb = !next || (tc["norm_topk_prob"] is JsonNode ntp ? ntp.GetValue<bool>() : true),
            DecoderSparseStep = Math.Max(1, Int("decoder_sparse_step", 1)),
            MlpOnlyLayers = (tc["mlp_only_layers"] as JsonArray)?.Select(x => (int)ConfigReader.Num(x!)).ToHashSet() ?? new HashSet<int>(),
            TieWordEmbeddings = Bool(tc, "tie_word_embeddings") || Bool(json, "tie_word_embeddings"),
            MtpLayers = mtp,
        };
        if (problems.Count == 0)
        {
            if (cfg.NumAttentionHeads % cfg.NumKeyValueHeads != 0) problems.Add("num_attention_heads must be a multiple of num_key_value_heads");
            if (cfg.LinearNumValueHeads % cfg.LinearNumKeyHeads != 0) problems.Add("linear_num_value_heads must be a multiple of linear_num_key_heads");
            if (cfg.RotaryDim % 2 != 0 || cfg.RotaryDim > cfg.HeadDim) problems.Add($"rotary dim {cfg.RotaryDim} must be even and at most head_dim");
            if (cfg.NumExperts > 0 && (cfg.NumExpertsPerTok < 1 || cfg.NumExpertsPerTok > cfg.NumExperts)) problems.Add("num_experts_per_tok must lie in 1..num_experts");
            if (cfg.NumExperts > 0 && cfg.MoeIntermediateSize < 1) problems.Add("moe_intermediate_size is missing");
            if (Enumerable.Range(0, layers).Any(i => !cfg.IsMoeLayer(i)) && cfg.IntermediateSize < 1) problems.Add("dense layers need intermediate_size");
        }
        if (problems.Count > 0) throw new ModelConfigException("config.json cannot be trained: " + string.Join("; ", problems));
        return cfg;
    }

    /// <summary>Reads <c>config.json</c> from a checkpoint directory.</summary>
    public static QwenConfig Load(string dir)
    {
        return FromJson(ConfigReader.Read(dir));
    }

}
