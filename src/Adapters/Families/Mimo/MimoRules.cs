namespace Mtp.Adapters;

/// <summary>
/// MiMo's rule table: main-model names kept (they are transformers' Qwen2 names); MTP depth k moves from
/// <c>model.mtp_layers.{k}.</c> to <c>mtp.layers.{k}.</c>, its norms to the training layout's names
/// (<c>token_layernorm</c> -> <c>enorm</c>, <c>hidden_layernorm</c> -> <c>hnorm</c>, <c>final_layernorm</c> kept).
/// <c>input_proj</c> keeps its name: it reads [hidden, embedding], the reverse of <c>eh_proj</c>'s [embedding, hidden],
/// and a plain rename would hand a model the halves swapped.
/// </summary>
static class MimoRules
{
    public static List<Rule> Build(ModelFacts f)
    {
        // Qwen2 blocks always have q/k/v biases; MiMo-7B states attention_bias true, and a config saying false drops them.
        bool bias = f.TextConfig["attention_bias"] is null || ConfigValues.True(f.TextConfig, "attention_bias");

        void DecoderBlock(Block b)
        {
            b.W("input_layernorm.weight");
            foreach (string p in new[] { "q_proj", "k_proj", "v_proj" })
            {
                b.W($"self_attn.{p}.weight");
                if (bias) b.W($"self_attn.{p}.bias");
            }
            b.W("self_attn.o_proj.weight");
            b.W("post_attention_layernorm.weight");
            foreach (string p in new[] { "gate_proj", "up_proj", "down_proj" }) b.W($"mlp.{p}.weight");
        }

        var list = new RuleList();
        list.Add("model.embed_tokens.weight", "model.embed_tokens.weight");
        DecoderBlock(new Block(list, "model.layers.{i}.", "model.layers.{i}.", LayerDomain.Main));
        list.Add("model.norm.weight", "model.norm.weight");
        list.Add("lm_head.weight", "lm_head.weight");
        var mtp = new Block(list, "model.mtp_layers.{k}.", "mtp.layers.{k}.", LayerDomain.Mtp);
        mtp.W("token_layernorm.weight", "enorm.weight");
        mtp.W("hidden_layernorm.weight", "hnorm.weight");
        mtp.W("input_proj.weight");
        DecoderBlock(mtp);
        mtp.W("final_layernorm.weight");
        return list.Rules;
    }
}
