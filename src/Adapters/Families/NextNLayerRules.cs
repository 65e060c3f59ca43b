namespace Mtp.Adapters;

/// <summary>
/// The checkpoint shape DeepSeek-V3 introduced and DeepSeek-V3.2 and GLM-4.5 keep: <c>model.</c> names, dense layers
/// then MoE layers (sigmoid router with correction bias, shared experts, per-expert routed experts), and MTP depth k
/// stored as one more decoder layer <c>model.layers.{L+k}</c> with <c>enorm</c>, <c>hnorm</c>, <c>eh_proj</c>,
/// <c>shared_head.norm</c> and copies of the embedding and the head. Families differ in their attention tensors only.
/// </summary>
static class NextNLayerRules
{
    static readonly string[] Mlp = { "gate_proj", "up_proj", "down_proj" };

    /// <summary>What a family puts into this shape.</summary>
    /// <param name="Attention">Adds the attention tensors of one decoder block (listed first in a block).</param>
    /// <param name="SharedExperts">Whether MoE layers have <c>mlp.shared_experts.*</c>.</param>
    /// <param name="CorrectionBiasOptional">Whether <c>mlp.gate.e_score_correction_bias</c> may be absent.</param>
    public sealed record Parts(Action<Block> Attention, bool SharedExperts, bool CorrectionBiasOptional);

    /// <summary>The rule table, in output order.</summary>
    public static List<Rule> Build(ModelFacts f, Parts parts)
    {
        int L = f.NumHiddenLayers;
        var list = new RuleList();
        Rule embed = list.Add("model.embed_tokens.weight", "model.embed_tokens.weight");

        void DecoderBlock(Block b)
        {
            parts.Attention(b);
            b.W("input_layernorm.weight");
            b.W("post_attention_layernorm.weight");
            Func<LayerContext, bool> dense = x => !f.IsMoe(x.HfLayer), moe = x => f.IsMoe(x.HfLayer);
            foreach (string p in Mlp) b.W($"mlp.{p}.weight", when: dense);
            b.W("mlp.gate.weight", when: moe);
            b.W("mlp.gate.e_score_correction_bias", when: moe, optional: parts.CorrectionBiasOptional);
            b.Experts("mlp.experts", "mlp.experts", Block.HfExperts with { FusedGateUp = null, FusedDown = null }, moe);
            if (parts.SharedExperts) foreach (string p in Mlp) b.W($"mlp.shared_experts.{p}.weight", when: moe);
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
