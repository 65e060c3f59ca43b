using System.Text.Json.Nodes;

namespace Mtp.Adapters;

/// <summary>DeepSeek-V3's rule table: HF names are kept, MTP depth k moves from <c>model.layers.{L+k}</c> to <c>mtp.layers.{k}</c>.</summary>
static class DeepSeekV3Rules
{
    static readonly string[] Mlp = { "gate_proj", "up_proj", "down_proj" };

    public static List<Rule> Build(ModelFacts f)
    {
        JsonObject c = f.TextConfig;
        bool qLora = c["q_lora_rank"] is JsonValue qv && qv.TryGetValue(out int _);
        bool shared = (ConfigValues.Int(c, "n_shared_experts") ?? 1) > 0; // missing: 1, transformers' and DeepSeek's default, as the model's
        bool noaux = ConfigValues.Str(c, "topk_method") == "noaux_tc";
        int L = f.NumHiddenLayers;
        var list = new RuleList();
        Rule embed = list.Add("model.embed_tokens.weight", "model.embed_tokens.weight");

        void DecoderBlock(Block b)
        {
            if (qLora) { b.W("self_attn.q_a_proj.weight"); b.W("self_attn.q_a_layernorm.weight"); b.W("self_attn.q_b_proj.weight"); }
            else b.W("self_attn.q_proj.weight");
            b.W("self_attn.kv_a_proj_with_mqa.weight");
            b.W("self_attn.kv_a_layernorm.weight");
            b.W("self_attn.kv_b_proj.weight");
            b.W("self_attn.o_proj.weight");
            b.W("input_layernorm.weight");
            b.W("post_attention_layernorm.weight");
            Func<LayerContext, bool> dense = x => !f.IsMoe(x.HfLayer), moe = x => f.IsMoe(x.HfLayer);
            foreach (string p in Mlp) b.W($"mlp.{p}.weight", when: dense);
            b.W("mlp.gate.weight", when: moe);
            b.W("mlp.gate.e_score_correction_bias", when: moe, optional: !noaux);
            b.Experts("mlp.experts", "mlp.experts", Block.HfExperts with { FusedGateUp = null, FusedDown = null }, moe);
            if (shared) foreach (string p in Mlp) b.W($"mlp.shared_experts.{p}.weight", when: moe);
        }

        DecoderBlock(new Block(list, "model.layers.{i}.", "model.layers.{i}.", LayerDomain.Main));
        list.Add("model.norm.weight", "model.norm.weight");
        Rule head = list.Add("lm_head.weight", "lm_head.weight");
        var mtp = new Block(list, $"model.layers.{{k+{L}}}.", "mtp.layers.{k}.", LayerDomain.Mtp);
        mtp.W("enorm.weight");
        mtp.W("hnorm.weight");
        mtp.W("eh_proj.weight");
        mtp.W("shared_head.norm.weight", "final_layernorm.weight");
        list.Add(Rule.TiedCopy($"model.layers.{{k+{L}}}.embed_tokens.weight", "mtp.layers.{k}.embed_tokens.weight", embed, LayerDomain.Mtp));
        list.Add(Rule.TiedCopy($"model.layers.{{k+{L}}}.shared_head.head.weight", "mtp.layers.{k}.shared_head.head.weight", head, LayerDomain.Mtp));
        DecoderBlock(mtp);
        return list.Rules;
    }
}
