using System.Text.Json.Nodes;

namespace Mtp.Adapters;

/// <summary>The Qwen3.5 / Qwen3-Next rule table: the text prefix dropped, the shared MTP fusion modules stored at depth 0.</summary>
static class QwenRules
{
    static readonly string[] Mlp = { "gate_proj", "up_proj", "down_proj" };

    public static List<Rule> Build(ModelFacts f, JsonObject config, bool next)
    {
        JsonObject c = f.TextConfig;
        string text = next ? "model." : "model.language_model.";
        int interval = Math.Max(1, ConfigValues.Int(c, "full_attention_interval") ?? 4);
        var types = (c["layer_types"] as JsonArray)?.Select(x => x?.GetValue<string>()).ToList();
        bool Full(LayerContext x) => x.IsMtp || (types != null && x.HfLayer < types.Count ? types[x.HfLayer] == "full_attention" : (x.HfLayer + 1) % interval == 0);
        bool sharedExpert = (ConfigValues.Int(c, "shared_expert_intermediate_size") ?? 0) > 0;
        bool tied = ConfigValues.True(c, "tie_word_embeddings") || ConfigValues.True(config, "tie_word_embeddings");
        var list = new RuleList();
        list.Add(text + "embed_tokens.weight", "model.embed_tokens.weight");
        void DecoderBlock(Block b) => AddBlock(b, f, Full, next, sharedExpert);

        DecoderBlock(new Block(list, text + "layers.{i}.", "model.layers.{i}.", LayerDomain.Main));
        list.Add(text + "norm.weight", "model.norm.weight");
        list.Add("lm_head.weight", "lm_head.weight", optional: tied);
        if (f.MtpDepth > 0)
        {
            // Qwen's fusion modules are shared by every MTP layer; they live at depth 0 of the training layout.
            list.Add("mtp.fc.weight", "mtp.layers.0.eh_proj.weight");
            list.Add("mtp.pre_fc_norm_embedding.weight", "mtp.layers.0.enorm.weight");
            list.Add("mtp.pre_fc_norm_hidden.weight", "mtp.layers.0.hnorm.weight");
            list.Add("mtp.norm.weight", "mtp.layers.0.final_layernorm.weight");
            DecoderBlock(new Block(list, "mtp.layers.{k}.", "mtp.layers.{k}.", LayerDomain.Mtp));
        }
        if (!next) list.Add(Rule.Carried("model.visual.{*}", "model.visual.{*}", optional: true));
        return list.Rules;
    }

    /// <summary>One decoder block (a main layer, or an MTP depth's block).</summary>
    static void AddBlock(Block b, ModelFacts f, Func<LayerContext, bool> full, bool next, bool sharedExpert)
    {
        b.W("input_layernorm.weight");
        b.W("post_attention_layernorm.weight");
        Func<LayerContext, bool> lin = x => !full(x);
        foreach (string p in new[] { "q_proj", "k_proj", "v_proj", "o_proj" }) b.W($"self_attn.{p}.weight", when: full);
        b.W("self_attn.q_norm.weight", when: full);
        b.W("self_attn.k_norm.weight", when: full);
        if (next) { b.W("linear_attn.in_proj_qkvz.weight", when: lin); b.W("linear_attn.in_proj_ba.weight", when: lin); }
        else
        {
            b.W("linear_attn.in_proj_qkv.weight", when: lin);
            b.W("linear_attn.in_proj_z.weight", when: lin);
            b.W("linear_attn.in_proj_b.weight", when: lin);
            b.W("linear_attn.in_proj_a.weight", when: lin);
        }
        foreach (string s in new[] { "conv1d.weight", "A_log", "dt_bias", "norm.weight", "out_proj.weight" }) b.W("linear_attn." + s, when: lin);
        Func<LayerContext, bool> moe = x => f.IsMoe(x.HfLayer), dense = x => !f.IsMoe(x.HfLayer);
        foreach (string p in Mlp) b.W($"mlp.{p}.weight", when: dense);
        b.W("mlp.gate.weight", when: moe);
        b.Experts("mlp.experts", "mlp.experts", Block.HfExperts, moe);
        if (sharedExpert)
        {
            foreach (string p in Mlp) b.W($"mlp.shared_expert.{p}.weight", when: moe);
            b.W("mlp.shared_expert_gate.weight", when: moe);
        }
    }
}
