namespace Mtp.Adapters;

/// <summary>
/// MiMo's rule tables. MiMo-7B: main-model names kept (they are transformers' Qwen2 names); MTP depth k moves from
/// <c>model.mtp_layers.{k}.</c> to <c>mtp.layers.{k}.</c>, its norms to the training layout's names
/// (<c>token_layernorm</c> -> <c>enorm</c>, <c>hidden_layernorm</c> -> <c>hnorm</c>, <c>final_layernorm</c> kept).
/// <c>input_proj</c> keeps its name: it reads [hidden, embedding], the reverse of <c>eh_proj</c>'s [embedding, hidden],
/// and a plain rename would hand a model the halves swapped. MiMo-V2-Flash (<see cref="BuildV2Flash"/>) has the same
/// decoder block with attention sinks and MoE layers added.
/// </summary>
static class MimoRules
{
    static readonly string[] Mlp = { "gate_proj", "up_proj", "down_proj" };

    /// <summary>What differs between the MiMo blocks.</summary>
    /// <param name="QkvBias">Whether q/k/v projections have biases.</param>
    /// <param name="Sink">Layers whose attention has <c>self_attn.attention_sink_bias</c>, <c>self_attn.sinks</c> in the
    /// training layout (null: none).</param>
    /// <param name="Moe">Layers whose MLP is routed experts (null: every layer dense).</param>
    /// <param name="PostNorm">The HF name of the norm before the MLP (the training layout's is always
    /// <c>post_attention_layernorm</c>).</param>
    internal sealed record BlockParts(bool QkvBias, Func<LayerContext, bool>? Sink, Func<LayerContext, bool>? Moe, string PostNorm = "post_attention_layernorm");

    /// <summary>One MiMo decoder block: Qwen2's attention (optionally with sinks) and a dense or MoE MLP.</summary>
    internal static void DecoderBlock(Block b, BlockParts parts)
    {
        b.W("input_layernorm.weight");
        foreach (string p in new[] { "q_proj", "k_proj", "v_proj" })
        {
            b.W($"self_attn.{p}.weight");
            if (parts.QkvBias) b.W($"self_attn.{p}.bias");
        }
        b.W("self_attn.o_proj.weight");
        // transformers' name for the sink logits (its conversion mapping renames the release's attention_sink_bias).
        if (parts.Sink != null) b.W("self_attn.attention_sink_bias", "self_attn.sinks", when: parts.Sink);
        b.W(parts.PostNorm + ".weight", "post_attention_layernorm.weight");
        Func<LayerContext, bool> moe = parts.Moe ?? (_ => false), dense = x => !moe(x);
        foreach (string p in Mlp) b.W($"mlp.{p}.weight", when: parts.Moe == null ? null : dense);
        if (parts.Moe == null) return;
        b.W("mlp.gate.weight", when: moe);
        b.W("mlp.gate.e_score_correction_bias", when: moe);
        b.Experts("mlp.experts", "mlp.experts", Block.HfExperts with { FusedGateUp = null, FusedDown = null }, moe);
    }

    /// <summary>MiMo-7B (<c>mimo</c>).</summary>
    public static List<Rule> Build(ModelFacts f)
    {
        // Qwen2 blocks always have q/k/v biases; MiMo-7B states attention_bias true, and a config saying false drops them.
        bool bias = f.TextConfig["attention_bias"] is null || ConfigValues.True(f.TextConfig, "attention_bias");
        var parts = new BlockParts(bias, null, null);
        var list = new RuleList();
        list.Add("model.embed_tokens.weight", "model.embed_tokens.weight");
        DecoderBlock(new Block(list, "model.layers.{i}.", "model.layers.{i}.", LayerDomain.Main), parts);
        list.Add("model.norm.weight", "model.norm.weight");
        list.Add("lm_head.weight", "lm_head.weight");
        var mtp = new Block(list, "model.mtp_layers.{k}.", "mtp.layers.{k}.", LayerDomain.Mtp);
        mtp.W("token_layernorm.weight", "enorm.weight");
        mtp.W("hidden_layernorm.weight", "hnorm.weight");
        mtp.W("input_proj.weight");
        DecoderBlock(mtp, parts);
        mtp.W("final_layernorm.weight");
        return list.Rules;
    }

    /// <summary>
    /// MiMo-V2-Flash (<c>mimo_v2_flash</c>): main names kept but <c>self_attn.attention_sink_bias</c> (on the layers
    /// <paramref name="layers"/> says have one), which becomes transformers' <c>self_attn.sinks</c>; MoE layers with a sigmoid router (<c>mlp.gate.weight</c>,
    /// <c>mlp.gate.e_score_correction_bias</c>) and per-expert experts, stacked; no shared experts. MTP depth k from
    /// <c>model.mtp.layers.{k}.</c> to <c>mtp.layers.{k}.</c>: <c>enorm</c>, <c>hnorm</c>, <c>eh_proj</c> (DeepSeek's
    /// [embedding, hidden] order) and <c>final_layernorm</c> keep their names, the block's <c>pre_mlp_layernorm</c>
    /// becomes <c>post_attention_layernorm</c>; the block is a sliding-window one with a dense MLP.
    /// </summary>
    public static List<Rule> BuildV2Flash(ModelFacts f, MimoV2FlashLayers layers)
    {
        bool bias = ConfigValues.True(f.TextConfig, "attention_bias");
        Func<LayerContext, bool> sink = x => layers.HasSink(x), moe = x => f.IsMoe(x.HfLayer);
        var list = new RuleList();
        list.Add("model.embed_tokens.weight", "model.embed_tokens.weight");
        DecoderBlock(new Block(list, "model.layers.{i}.", "model.layers.{i}.", LayerDomain.Main), new BlockParts(bias, sink, moe));
        list.Add("model.norm.weight", "model.norm.weight");
        list.Add("lm_head.weight", "lm_head.weight");
        var mtp = new Block(list, "model.mtp.layers.{k}.", "mtp.layers.{k}.", LayerDomain.Mtp);
        mtp.W("enorm.weight");
        mtp.W("hnorm.weight");
        mtp.W("eh_proj.weight");
        DecoderBlock(mtp, new BlockParts(bias, sink, null, "pre_mlp_layernorm"));
        mtp.W("final_layernorm.weight");
        return list.Rules;
    }
}
