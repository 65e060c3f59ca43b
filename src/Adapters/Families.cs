using System.Text.Json.Nodes;
using System.Text.RegularExpressions;

namespace Mtp.Adapters;

/// <summary>Facts about a checkpoint read from its config.json (and, where the config is silent, from its tensor names).</summary>
/// <param name="Family">Family id (<see cref="Families.DeepSeekV3"/>, ...).</param>
/// <param name="ModelType">config <c>model_type</c>.</param>
/// <param name="NumHiddenLayers">L, the main decoder layers.</param>
/// <param name="MtpDepth">D, the MTP depths.</param>
/// <param name="NumExperts">E, routed experts per MoE layer (0: dense model).</param>
/// <param name="MoeLayers">For each decoder layer index 0..L+D-1 (MTP depth k at L+k): whether it is MoE.</param>
/// <param name="HfExpertLayout">How the HF checkpoints of this family store routed experts.</param>
/// <param name="MtpFusionShared">Whether all MTP depths share one set of fusion modules (Qwen: yes, stored at depth 0).</param>
/// <param name="TextConfig">The config object holding the text fields (<c>text_config</c> for Qwen3.5).</param>
public sealed record ModelFacts(string Family, string ModelType, int NumHiddenLayers, int MtpDepth, int NumExperts,
    IReadOnlyList<bool> MoeLayers, string HfExpertLayout, bool MtpFusionShared, JsonObject TextConfig)
{
    /// <summary>Whether decoder layer <paramref name="hfLayer"/> (MTP depth k at L+k) is MoE.</summary>
    public bool IsMoe(int hfLayer) => hfLayer >= 0 && hfLayer < MoeLayers.Count && MoeLayers[hfLayer];
}

/// <summary>Recognizes a checkpoint's family from config.json.</summary>
public static class FamilyDetector
{
    /// <summary>The family id for a config (<c>model_type</c>, then <c>text_config.model_type</c>), or null.</summary>
    public static string? Detect(JsonObject config) => FamilyRegistry.Of(config)?.Id;

    internal static string? Str(JsonObject o, string key) => o[key] is JsonValue v && v.TryGetValue(out string? s) ? s : null;
}

/// <summary>The supported families and their declarative rule tables.</summary>
public static class Families
{
    /// <summary>DeepSeek-V3 (also V3.1 / R1 layouts).</summary>
    public const string DeepSeekV3 = "deepseek-v3";
    /// <summary>DeepSeek-V4 (V4-Flash, Base/Pro scale variants, legacy MTP layout).</summary>
    public const string DeepSeekV4 = "deepseek-v4";
    /// <summary>Qwen3.5 (<c>qwen3_5</c>, <c>qwen3_5_moe</c>).</summary>
    public const string Qwen35 = "qwen3.5";
    /// <summary>Qwen3-Next.</summary>
    public const string Qwen3Next = "qwen3-next";

    /// <summary>All family ids.</summary>
    public static IReadOnlyList<string> All { get; } = new[] { DeepSeekV3, DeepSeekV4, Qwen35, Qwen3Next };

    /// <summary>Normalizes a user-given family name (accepts model_type spellings too); null if unknown.</summary>
    public static string? Normalize(string name)
    {
        string n = name.Trim().ToLowerInvariant().Replace('_', '-');
        return n switch
        {
            "deepseek-v3" or "deepseekv3" => DeepSeekV3,
            "deepseek-v4" or "deepseekv4" or "deepseek-v4-flash" => DeepSeekV4,
            "qwen3.5" or "qwen3-5" or "qwen3-5-moe" or "qwen3.5-moe" => Qwen35,
            "qwen3-next" => Qwen3Next,
            _ => null,
        };
    }

    static JsonObject TextConfig(JsonObject config) => config["text_config"] as JsonObject ?? config;

    // An absent or null key is null; any other value must be a 32-bit integer (a float, a string or an
    // out-of-range number is malformed input, never a silently wrapped or ignored value).
    static int? Int(JsonObject o, string key) => o[key] switch
    {
        null => null,
        JsonValue v when v.TryGetValue(out int x) => x,
        var n => throw new AdapterException(AdapterErrorKind.Malformed, $"config.json: '{key}' must be an integer, not {Shown(n)}"),
    };

    /// <summary>A count (layers, depths, experts): absent is null, otherwise a non-negative integer.</summary>
    static int? Count(JsonObject o, string key) => Int(o, key) is int n && n < 0
        ? throw new AdapterException(AdapterErrorKind.Malformed, $"config.json: '{key}' must not be negative, not {n}")
        : Int(o, key);

    static string Shown(JsonNode n)
    {
        string t = n.ToJsonString();
        return t.Length > 40 ? t[..40] + "..." : t;
    }

    static int ReqInt(JsonObject o, string key, string family) => Int(o, key)
        ?? throw new AdapterException(AdapterErrorKind.Malformed, $"config.json: {family} needs an integer '{key}'");

    /// <summary>
    /// Reads the facts of a config for <paramref name="family"/>. <paramref name="tensorNames"/> (optional) settles what the
    /// config leaves open (Qwen3-Next's MTP depth when <c>num_nextn_predict_layers</c> is absent).
    /// </summary>
    public static ModelFacts ReadFacts(string family, JsonObject config, IEnumerable<string>? tensorNames = null)
    {
        JsonObject tc = TextConfig(config);
        string modelType = FamilyDetector.Str(config, "model_type") ?? "";
        int L = ReqInt(tc, "num_hidden_layers", family);
        if (L < 0) throw new AdapterException(AdapterErrorKind.Malformed, "config.json: num_hidden_layers is negative");
        switch (family)
        {
            case DeepSeekV3:
            {
                int d = Count(tc, "num_nextn_predict_layers") ?? 0;
                int e = Count(tc, "n_routed_experts") ?? 0;
                int firstDense = Count(tc, "first_k_dense_replace") ?? 3; // transformers' and DeepSeek's default, as the model's
                int freq = Math.Max(1, Count(tc, "moe_layer_freq") ?? 1);
                var moe = Enumerable.Range(0, L + d).Select(i => e > 0 && (i >= L || (i >= firstDense && i % freq == 0))).ToList();
                return new ModelFacts(family, modelType, L, d, e, moe, "per-expert mlp.experts.{e}.{gate,up,down}_proj (FP8 + weight_scale_inv)", false, tc);
            }
            case DeepSeekV4:
            {
                int d = Count(tc, "num_nextn_predict_layers") ?? 0;
                int e = Count(tc, "n_routed_experts") ?? 0;
                var moe = Enumerable.Range(0, L + d).Select(_ => e > 0).ToList();
                return new ModelFacts(family, modelType, L, d, e, moe, "per-expert ffn.experts.{e}.w1|w3|w2 (packed FP4 I8 + E8M0 per 32, or FP8)", false, tc);
            }
            case Qwen35:
            case Qwen3Next:
            {
                int? d = family == Qwen35 ? Count(tc, "mtp_num_hidden_layers") : Count(tc, "num_nextn_predict_layers");
                if (d == null && tensorNames != null)
                {
                    var rx = new Regex(@"^mtp\.layers\.(\d+)\.");
                    d = tensorNames.Select(n => rx.Match(n)).Where(m => m.Success).Select(m => int.Parse(m.Groups[1].Value) + 1).DefaultIfEmpty(0).Max();
                }
                int e = Count(tc, "num_experts") ?? 0;
                int step = Math.Max(1, Count(tc, "decoder_sparse_step") ?? 1);
                var mlpOnly = MlpOnlyLayers(tc);
                var moe = Enumerable.Range(0, L + (d ?? 0)).Select(i => e > 0 && (i >= L || (!mlpOnly.Contains(i) && (i + 1) % step == 0))).ToList();
                return new ModelFacts(family, modelType, L, d ?? 0, e, moe, "fused mlp.experts.gate_up_proj/down_proj or per-expert mlp.experts.{e}.*_proj", true, tc);
            }
            default:
                throw new AdapterException(AdapterErrorKind.Usage, $"unknown family '{family}' (known: {string.Join(", ", All)})");
        }
    }

    /// <summary>Qwen's <c>mlp_only_layers</c>: absent, or an array of layer indices.</summary>
    static HashSet<int> MlpOnlyLayers(JsonObject tc)
    {
        var set = new HashSet<int>();
        switch (tc["mlp_only_layers"])
        {
            case null: return set;
            case JsonArray a:
                foreach (var x in a)
                    set.Add(x is JsonValue v && v.TryGetValue(out int i) ? i
                        : throw new AdapterException(AdapterErrorKind.Malformed, $"config.json: 'mlp_only_layers' must hold integers, not {(x is null ? "null" : Shown(x))}"));
                return set;
            case var n: throw new AdapterException(AdapterErrorKind.Malformed, $"config.json: 'mlp_only_layers' must be an array, not {Shown(n)}");
        }
    }

    /// <summary>
    /// Builds the family's rule table for a config. <paramref name="hfNames"/> (the HF checkpoint's names, when known)
    /// picks between source layout variants (DeepSeek-V4's legacy MTP layout).
    /// </summary>
    public static RuleTable BuildTable(string family, JsonObject config, IReadOnlyCollection<string>? hfNames = null, IReadOnlyCollection<string>? nativeNames = null)
    {
        ModelFacts f = ReadFacts(family, config, hfNames);
        return family switch
        {
            DeepSeekV3 => new RuleTable(family, f, DeepSeekV3Rules(f), w => w + "_scale_inv"),
            DeepSeekV4 => new RuleTable(family, f, DeepSeekV4Rules(f, IsV4Legacy(f, hfNames, nativeNames)), V4ScaleName),
            Qwen35 or Qwen3Next => new RuleTable(family, f, QwenRules(f, config), w => w + "_scale_inv"),
            _ => throw new AdapterException(AdapterErrorKind.Usage, $"unknown family '{family}'"),
        };
    }

    static string V4ScaleName(string w) => w.EndsWith(".weight", StringComparison.Ordinal) ? w[..^".weight".Length] + ".scale" : w + ".scale";

    static bool IsV4Legacy(ModelFacts f, IReadOnlyCollection<string>? hf, IReadOnlyCollection<string>? native)
    {
        if (f.MtpDepth == 0) return false;
        if (hf != null)
        {
            string legacyPrefix = $"model.layers.{f.NumHiddenLayers}.", legacyFusion = $"layers.{f.NumHiddenLayers}.eh_proj.weight";
            if (hf.Any(n => n.StartsWith("mtp.0.", StringComparison.Ordinal))) return false;
            return hf.Contains(legacyFusion) || hf.Any(n => n.StartsWith(legacyPrefix, StringComparison.Ordinal));
        }
        return native != null && native.Contains("mtp.layers.0.eh_proj.weight");
    }

    // ---------------------------------------------------------------- table helpers

    sealed class RuleList
    {
        public readonly List<Rule> Rules = new();
        public Rule Add(string hf, string native, RuleOp op = RuleOp.Weight, LayerDomain d = LayerDomain.Global, Func<LayerContext, bool>? when = null,
            bool optional = false, Rule? tiedTo = null, ExpertNames? experts = null, bool q = true)
        {
            var r = new Rule(hf, native, op, d, when, optional, tiedTo, experts, q);
            Rules.Add(r);
            return r;
        }
    }

    /// <summary>Adds a decoder block's rules under an HF and a native prefix.</summary>
    sealed class Block(RuleList list, string hf, string native, LayerDomain domain)
    {
        public void W(string hfSub, string? nativeSub = null, Func<LayerContext, bool>? when = null, bool optional = false, bool q = true) =>
            list.Add(hf + hfSub, native + (nativeSub ?? hfSub), RuleOp.Weight, domain, when, optional, q: q);
        public void Experts(string hfSub, string nativeSub, ExpertNames names, Func<LayerContext, bool> when) =>
            list.Add(hf + hfSub, native + nativeSub, RuleOp.StackExperts, domain, when, experts: names);
    }

    static readonly ExpertNames HfExperts = new("{e}.gate_proj.weight", "{e}.up_proj.weight", "{e}.down_proj.weight", "gate_up_proj", "down_proj", false);

    // ---------------------------------------------------------------- DeepSeek-V3

    static List<Rule> DeepSeekV3Rules(ModelFacts f)
    {
        JsonObject c = f.TextConfig;
        bool qLora = c["q_lora_rank"] is JsonValue qv && qv.TryGetValue(out int _);
        bool shared = (Int(c, "n_shared_experts") ?? 1) > 0; // missing: 1, transformers' and DeepSeek's default, as the model's
        bool noaux = FamilyDetector.Str(c, "topk_method") == "noaux_tc";
        int L = f.NumHiddenLayers;
        var list = new RuleList();
        Rule embed = list.Add("model.embed_tokens.weight", "model.embed_tokens.weight", q: false);

        void DecoderBlock(Block b)
        {
            if (qLora) { b.W("self_attn.q_a_proj.weight"); b.W("self_attn.q_a_layernorm.weight", q: false); b.W("self_attn.q_b_proj.weight"); }
            else b.W("self_attn.q_proj.weight");
            b.W("self_attn.kv_a_proj_with_mqa.weight");
            b.W("self_attn.kv_a_layernorm.weight", q: false);
            b.W("self_attn.kv_b_proj.weight");
            b.W("self_attn.o_proj.weight");
            b.W("input_layernorm.weight", q: false);
            b.W("post_attention_layernorm.weight", q: false);
            Func<LayerContext, bool> dense = x => !f.IsMoe(x.HfLayer), moe = x => f.IsMoe(x.HfLayer);
            foreach (string p in new[] { "gate_proj", "up_proj", "down_proj" }) b.W($"mlp.{p}.weight", when: dense);
            b.W("mlp.gate.weight", when: moe, q: false);
            b.W("mlp.gate.e_score_correction_bias", when: moe, optional: !noaux, q: false);
            b.Experts("mlp.experts", "mlp.experts", HfExperts with { FusedGateUp = null, FusedDown = null }, moe);
            if (shared) foreach (string p in new[] { "gate_proj", "up_proj", "down_proj" }) b.W($"mlp.shared_experts.{p}.weight", when: moe);
        }

        DecoderBlock(new Block(list, "model.layers.{i}.", "model.layers.{i}.", LayerDomain.Main));
        Rule norm = list.Add("model.norm.weight", "model.norm.weight", q: false);
        Rule head = list.Add("lm_head.weight", "lm_head.weight", q: false);
        var mtp = new Block(list, $"model.layers.{{k+{L}}}.", "mtp.layers.{k}.", LayerDomain.Mtp);
        mtp.W("enorm.weight", q: false);
        mtp.W("hnorm.weight", q: false);
        mtp.W("eh_proj.weight");
        mtp.W("shared_head.norm.weight", "final_layernorm.weight", q: false);
        list.Add($"model.layers.{{k+{L}}}.embed_tokens.weight", "mtp.layers.{k}.embed_tokens.weight", RuleOp.DropIfTied, LayerDomain.Mtp, tiedTo: embed, q: false);
        list.Add($"model.layers.{{k+{L}}}.shared_head.head.weight", "mtp.layers.{k}.shared_head.head.weight", RuleOp.DropIfTied, LayerDomain.Mtp, tiedTo: head, q: false);
        DecoderBlock(mtp);
        _ = norm;
        return list.Rules;
    }

    // ---------------------------------------------------------------- DeepSeek-V4

    static List<Rule> DeepSeekV4Rules(ModelFacts f, bool legacyMtp)
    {
        JsonObject c = f.TextConfig;
        int L = f.NumHiddenLayers;
        int hashLayers = Count(c, "num_hash_layers") ?? 0;
        bool shared = (Int(c, "n_shared_experts") ?? 1) > 0; // missing: 1, as transformers' DeepseekV4Config and the model
        var ratios = (c["compress_ratios"] as JsonArray)?.Select(x => x is JsonValue v && v.TryGetValue(out int r) ? r : 0).ToList() ?? new List<int>();
        int Ratio(LayerContext x) => x.HfLayer < ratios.Count && !x.IsMtp ? ratios[x.HfLayer] : 0;
        var list = new RuleList();
        Rule embed = list.Add("embed.weight", "model.embed_tokens.weight", q: false);
        foreach (string p in new[] { "fn", "base", "scale" }) list.Add($"hc_head_{p}", $"model.hc_head.{p}", q: false);

        void DecoderBlock(Block b)
        {
            b.W("attn_norm.weight", q: false);
            b.W("ffn_norm.weight", q: false);
            foreach (string h in new[] { "attn", "ffn" })
                foreach (string p in new[] { "fn", "base", "scale" }) b.W($"hc_{h}_{p}", q: false);
            b.W("attn.wq_a.weight");
            b.W("attn.q_norm.weight", q: false);
            b.W("attn.wq_b.weight");
            b.W("attn.wkv.weight");
            b.W("attn.kv_norm.weight", q: false);
            b.W("attn.wo_a.weight");
            b.W("attn.wo_b.weight");
            b.W("attn.attn_sink", q: false);
            Func<LayerContext, bool> comp = x => Ratio(x) > 0, idx = x => Ratio(x) == 4;
            b.W("attn.compressor.wkv.weight", when: comp, q: false);
            b.W("attn.compressor.wgate.weight", when: comp, q: false);
            b.W("attn.compressor.ape", when: comp, q: false);
            b.W("attn.compressor.norm.weight", when: comp, q: false);
            b.W("attn.indexer.wq_b.weight", when: idx);
            b.W("attn.indexer.weights_proj.weight", when: idx, q: false);
            foreach (string s in new[] { "wkv.weight", "wgate.weight", "ape", "norm.weight" }) b.W("attn.indexer.compressor." + s, when: idx, q: false);
            Func<LayerContext, bool> moe = x => f.IsMoe(x.HfLayer), hash = x => moe(x) && !x.IsMtp && x.HfLayer < hashLayers;
            b.W("ffn.gate.weight", "mlp.gate.weight", when: moe, q: false);
            b.W("ffn.gate.bias", "mlp.gate.bias", when: x => moe(x) && !hash(x), q: false);
            b.W("ffn.gate.tid2eid", "mlp.gate.tid2eid", when: hash, q: false);
            b.Experts("ffn.experts", "mlp.experts", new ExpertNames("{e}.w1.weight", "{e}.w3.weight", "{e}.w2.weight", null, null, true), moe);
            if (shared)
            {
                b.W("ffn.shared_experts.w1.weight", "mlp.shared_experts.gate_proj.weight", when: moe);
                b.W("ffn.shared_experts.w3.weight", "mlp.shared_experts.up_proj.weight", when: moe);
                b.W("ffn.shared_experts.w2.weight", "mlp.shared_experts.down_proj.weight", when: moe);
            }
        }

        DecoderBlock(new Block(list, "layers.{i}.", "model.layers.{i}.", LayerDomain.Main));
        list.Add("norm.weight", "model.norm.weight", q: false);
        Rule head = list.Add("head.weight", "lm_head.weight", q: false);
        if (!legacyMtp)
        {
            var m = new Block(list, "mtp.{k}.", "mtp.layers.{k}.", LayerDomain.Mtp);
            m.W("e_proj.weight");
            m.W("h_proj.weight");
            m.W("enorm.weight", q: false);
            m.W("hnorm.weight", q: false);
            m.W("norm.weight", "final_layernorm.weight", q: false);
            foreach (string p in new[] { "fn", "base", "scale" }) m.W($"hc_head_{p}", $"hc_head.{p}", q: false);
            list.Add("mtp.{k}.emb.tok_emb.weight", "mtp.layers.{k}.embed_tokens.weight", RuleOp.DropIfTied, LayerDomain.Mtp, optional: true, tiedTo: embed, q: false);
            list.Add("mtp.{k}.head.weight", "mtp.layers.{k}.shared_head.head.weight", RuleOp.DropIfTied, LayerDomain.Mtp, optional: true, tiedTo: head, q: false);
            DecoderBlock(m);
        }
        else
        {
            var fusion = new Block(list, $"layers.{{k+{L}}}.", "mtp.layers.{k}.", LayerDomain.Mtp);
            fusion.W("eh_proj.weight");
            fusion.W("enorm.weight", q: false);
            fusion.W("hnorm.weight", q: false);
            fusion.W("final_layernorm.weight", q: false);
            DecoderBlock(new Block(list, $"model.layers.{{k+{L}}}.", "mtp.layers.{k}.", LayerDomain.Mtp));
        }
        return list.Rules;
    }

    // ---------------------------------------------------------------- Qwen3.5 / Qwen3-Next

    static List<Rule> QwenRules(ModelFacts f, JsonObject config)
    {
        JsonObject c = f.TextConfig;
        bool next = f.Family == Qwen3Next;
        string text = next ? "model." : "model.language_model.";
        int interval = Math.Max(1, Int(c, "full_attention_interval") ?? 4);
        var types = (c["layer_types"] as JsonArray)?.Select(x => x?.GetValue<string>()).ToList();
        bool Full(LayerContext x) => x.IsMtp || (types != null && x.HfLayer < types.Count ? types[x.HfLayer] == "full_attention" : (x.HfLayer + 1) % interval == 0);
        bool sharedExpert = (Int(c, "shared_expert_intermediate_size") ?? 0) > 0;
        bool tied = config_bool(c, "tie_word_embeddings") || config_bool(config, "tie_word_embeddings");
        var list = new RuleList();
        list.Add(text + "embed_tokens.weight", "model.embed_tokens.weight", q: false);

        void DecoderBlock(Block b)
        {
            b.W("input_layernorm.weight", q: false);
            b.W("post_attention_layernorm.weight", q: false);
            Func<LayerContext, bool> full = Full, lin = x => !Full(x);
            foreach (string p in new[] { "q_proj", "k_proj", "v_proj", "o_proj" }) b.W($"self_attn.{p}.weight", when: full);
            b.W("self_attn.q_norm.weight", when: full, q: false);
            b.W("self_attn.k_norm.weight", when: full, q: false);
            if (next) { b.W("linear_attn.in_proj_qkvz.weight", when: lin); b.W("linear_attn.in_proj_ba.weight", when: lin, q: false); }
            else
            {
                b.W("linear_attn.in_proj_qkv.weight", when: lin);
                b.W("linear_attn.in_proj_z.weight", when: lin);
                b.W("linear_attn.in_proj_b.weight", when: lin, q: false);
                b.W("linear_attn.in_proj_a.weight", when: lin, q: false);
            }
            b.W("linear_attn.conv1d.weight", when: lin, q: false);
            b.W("linear_attn.A_log", when: lin, q: false);
            b.W("linear_attn.dt_bias", when: lin, q: false);
            b.W("linear_attn.norm.weight", when: lin, q: false);
            b.W("linear_attn.out_proj.weight", when: lin);
            Func<LayerContext, bool> moe = x => f.IsMoe(x.HfLayer), dense = x => !f.IsMoe(x.HfLayer);
            foreach (string p in new[] { "gate_proj", "up_proj", "down_proj" }) b.W($"mlp.{p}.weight", when: dense);
            b.W("mlp.gate.weight", when: moe, q: false);
            b.Experts("mlp.experts", "mlp.experts", HfExperts, moe);
            if (sharedExpert)
            {
                foreach (string p in new[] { "gate_proj", "up_proj", "down_proj" }) b.W($"mlp.shared_expert.{p}.weight", when: moe);
                b.W("mlp.shared_expert_gate.weight", when: moe, q: false);
            }
        }

        DecoderBlock(new Block(list, text + "layers.{i}.", "model.layers.{i}.", LayerDomain.Main));
        list.Add(text + "norm.weight", "model.norm.weight", q: false);
        list.Add("lm_head.weight", "lm_head.weight", optional: tied, q: false);
        if (f.MtpDepth > 0)
        {
            // Qwen's fusion modules are shared by every MTP layer; they live at depth 0 of the training layout.
            list.Add("mtp.fc.weight", "mtp.layers.0.eh_proj.weight");
            list.Add("mtp.pre_fc_norm_embedding.weight", "mtp.layers.0.enorm.weight", q: false);
            list.Add("mtp.pre_fc_norm_hidden.weight", "mtp.layers.0.hnorm.weight", q: false);
            list.Add("mtp.norm.weight", "mtp.layers.0.final_layernorm.weight", q: false);
            DecoderBlock(new Block(list, "mtp.layers.{k}.", "mtp.layers.{k}.", LayerDomain.Mtp));
        }
        if (!next) list.Add("model.visual.{*}", "model.visual.{*}", RuleOp.CarryThrough, optional: true, q: false);
        return list.Rules;

        static bool config_bool(JsonObject o, string key) => o[key] is JsonValue v && v.TryGetValue(out bool b) && b;
    }
}
