using System.Text.Json.Nodes;

namespace Mtp.Adapters;

/// <summary>
/// DeepSeek-V4's rule table: DeepSeek's module names to the training layout, which is transformers'
/// <c>DeepseekV4ForCausalLM</c> naming (docs/deepseek-v4-transformers-names.md); MTP depths keep <c>mtp.layers.{k}</c> with
/// the same block names as a main layer.
/// </summary>
static class DeepSeekV4Rules
{
    static readonly string[] Hc = { "fn", "base", "scale" };
    /// <summary>A compressor's tensors: DeepSeek's sub-names and transformers'.</summary>
    static readonly (string Hf, string Native)[] CompressorNames =
        { ("wkv.weight", "kv_proj.weight"), ("wgate.weight", "gate_proj.weight"), ("ape", "position_bias"), ("norm.weight", "kv_norm.weight") };

    public static List<Rule> Build(ModelFacts f, bool legacyMtp)
    {
        JsonObject c = f.TextConfig;
        int L = f.NumHiddenLayers;
        int hashLayers = ConfigValues.Count(c, "num_hash_layers") ?? 0;
        bool shared = (ConfigValues.Int(c, "n_shared_experts") ?? 1) > 0; // missing: 1, as transformers' DeepseekV4Config and the model
        var ratios = (c["compress_ratios"] as JsonArray)?.Select(x => x is JsonValue v && v.TryGetValue(out int r) ? r : 0).ToList() ?? new List<int>();
        int Ratio(LayerContext x) => x.HfLayer < ratios.Count && !x.IsMtp ? ratios[x.HfLayer] : 0;
        var list = new RuleList();
        Rule embed = list.Add("embed.weight", "model.embed_tokens.weight");
        foreach (string p in Hc) list.Add($"hc_head_{p}", $"model.hc_head.hc_{p}");
        void DecoderBlock(Block b) => AddBlock(b, f, Ratio, hashLayers, shared);

        DecoderBlock(new Block(list, "layers.{i}.", "model.layers.{i}.", LayerDomain.Main));
        list.Add("norm.weight", "model.norm.weight");
        Rule head = list.Add("head.weight", "lm_head.weight");
        if (!legacyMtp)
        {
            var m = new Block(list, "mtp.{k}.", "mtp.layers.{k}.", LayerDomain.Mtp);
            m.W("e_proj.weight");
            m.W("h_proj.weight");
            m.W("enorm.weight");
            m.W("hnorm.weight");
            m.W("norm.weight", "final_layernorm.weight");
            foreach (string p in Hc) m.W($"hc_head_{p}", $"hc_head.hc_{p}"); // as the main hc_head
            list.Add(Rule.TiedCopy("mtp.{k}.emb.tok_emb.weight", "mtp.layers.{k}.embed_tokens.weight", embed, LayerDomain.Mtp, optional: true));
            list.Add(Rule.TiedCopy("mtp.{k}.head.weight", "mtp.layers.{k}.shared_head.head.weight", head, LayerDomain.Mtp, optional: true));
            DecoderBlock(m);
        }
        else
        {
            var fusion = new Block(list, $"layers.{{k+{L}}}.", "mtp.layers.{k}.", LayerDomain.Mtp);
            fusion.W("eh_proj.weight");
            fusion.W("enorm.weight");
            fusion.W("hnorm.weight");
            fusion.W("final_layernorm.weight");
            DecoderBlock(new Block(list, $"model.layers.{{k+{L}}}.", "mtp.layers.{k}.", LayerDomain.Mtp));
        }
        return list.Rules;
    }

    /// <summary>One decoder block (a main layer, or an MTP depth's block).</summary>
    static void AddBlock(Block b, ModelFacts f, Func<LayerContext, int> ratio, int hashLayers, bool shared)
    {
        b.W("attn_norm.weight", "input_layernorm.weight");
        b.W("ffn_norm.weight", "post_attention_layernorm.weight");
        foreach (string h in new[] { "attn", "ffn" })
            foreach (string p in Hc) b.W($"hc_{h}_{p}", $"{h}_hc.{p}");
        b.W("attn.wq_a.weight", "self_attn.q_a_proj.weight");
        b.W("attn.q_norm.weight", "self_attn.q_a_norm.weight");
        b.W("attn.wq_b.weight", "self_attn.q_b_proj.weight");
        b.W("attn.wkv.weight", "self_attn.kv_proj.weight");
        b.W("attn.kv_norm.weight", "self_attn.kv_norm.weight");
        b.W("attn.wo_a.weight", "self_attn.o_a_proj.weight");
        b.W("attn.wo_b.weight", "self_attn.o_b_proj.weight");
        b.W("attn.attn_sink", "self_attn.sinks");
        Func<LayerContext, bool> comp = x => ratio(x) > 0, idx = x => ratio(x) == 4;
        // transformers nests the ratio-4 indexer in the compressor and flattens the indexer's own compressor into it.
        foreach (var (hfSub, nativeSub) in CompressorNames) b.W("attn.compressor." + hfSub, "self_attn.compressor." + nativeSub, when: comp);
        b.W("attn.indexer.wq_b.weight", "self_attn.compressor.indexer.q_b_proj.weight", when: idx);
        b.W("attn.indexer.weights_proj.weight", "self_attn.compressor.indexer.scorer.weights_proj.weight", when: idx);
        foreach (var (hfSub, nativeSub) in CompressorNames) b.W("attn.indexer.compressor." + hfSub, "self_attn.compressor.indexer." + nativeSub, when: idx);
        Func<LayerContext, bool> moe = x => f.IsMoe(x.HfLayer), hash = x => moe(x) && !x.IsMtp && x.HfLayer < hashLayers;
        b.W("ffn.gate.weight", "mlp.gate.weight", when: moe);
        b.W("ffn.gate.bias", "mlp.gate.e_score_correction_bias", when: x => moe(x) && !hash(x));
        b.W("ffn.gate.tid2eid", "mlp.gate.tid2eid", when: hash);
        b.Experts("ffn.experts", "mlp.experts", new ExpertNames("{e}.w1.weight", "{e}.w3.weight", "{e}.w2.weight", null, null, true), moe);
        if (shared)
        {
            b.W("ffn.shared_experts.w1.weight", "mlp.shared_experts.gate_proj.weight", when: moe);
            b.W("ffn.shared_experts.w3.weight", "mlp.shared_experts.up_proj.weight", when: moe);
            b.W("ffn.shared_experts.w2.weight", "mlp.shared_experts.down_proj.weight", when: moe);
        }
    }
}
