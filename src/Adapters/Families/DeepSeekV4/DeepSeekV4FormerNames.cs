namespace Mtp.Adapters;

/// <summary>
/// DeepSeek-V4's training names before they became transformers' (issue 18): the release's module names under
/// <c>model.</c>. Old -> current; every entry is a pure rename (same shape, dtype and bytes). The table in
/// docs/deepseek-v4-transformers-names.md is this one.
/// </summary>
public static class DeepSeekV4FormerNames
{
    /// <summary>The table (block sub-names apply to main layers and MTP depths alike).</summary>
    public static readonly FormerTrainingNames Table = new(
        new Dictionary<string, string>(StringComparer.Ordinal)
        {
            ["attn_norm.weight"] = "input_layernorm.weight",
            ["ffn_norm.weight"] = "post_attention_layernorm.weight",
            ["hc_attn_fn"] = "attn_hc.fn",
            ["hc_attn_base"] = "attn_hc.base",
            ["hc_attn_scale"] = "attn_hc.scale",
            ["hc_ffn_fn"] = "ffn_hc.fn",
            ["hc_ffn_base"] = "ffn_hc.base",
            ["hc_ffn_scale"] = "ffn_hc.scale",
            ["attn.attn_sink"] = "self_attn.sinks",
            ["attn.wq_a.weight"] = "self_attn.q_a_proj.weight",
            ["attn.q_norm.weight"] = "self_attn.q_a_norm.weight",
            ["attn.wq_b.weight"] = "self_attn.q_b_proj.weight",
            ["attn.wkv.weight"] = "self_attn.kv_proj.weight",
            ["attn.kv_norm.weight"] = "self_attn.kv_norm.weight",
            ["attn.wo_a.weight"] = "self_attn.o_a_proj.weight",
            ["attn.wo_b.weight"] = "self_attn.o_b_proj.weight",
            ["attn.compressor.ape"] = "self_attn.compressor.position_bias",
            ["attn.compressor.wkv.weight"] = "self_attn.compressor.kv_proj.weight",
            ["attn.compressor.wgate.weight"] = "self_attn.compressor.gate_proj.weight",
            ["attn.compressor.norm.weight"] = "self_attn.compressor.kv_norm.weight",
            ["attn.indexer.wq_b.weight"] = "self_attn.compressor.indexer.q_b_proj.weight",
            ["attn.indexer.weights_proj.weight"] = "self_attn.compressor.indexer.scorer.weights_proj.weight",
            ["attn.indexer.compressor.ape"] = "self_attn.compressor.indexer.position_bias",
            ["attn.indexer.compressor.wkv.weight"] = "self_attn.compressor.indexer.kv_proj.weight",
            ["attn.indexer.compressor.wgate.weight"] = "self_attn.compressor.indexer.gate_proj.weight",
            ["attn.indexer.compressor.norm.weight"] = "self_attn.compressor.indexer.kv_norm.weight",
            ["mlp.gate.bias"] = "mlp.gate.e_score_correction_bias",
            // An MTP depth's own hc_head (mtp.layers.{k}.hc_head.*), named like the main one.
            ["hc_head.fn"] = "hc_head.hc_fn",
            ["hc_head.base"] = "hc_head.hc_base",
            ["hc_head.scale"] = "hc_head.hc_scale",
        },
        new Dictionary<string, string>(StringComparer.Ordinal)
        {
            ["model.hc_head.fn"] = "model.hc_head.hc_fn",
            ["model.hc_head.base"] = "model.hc_head.hc_base",
            ["model.hc_head.scale"] = "model.hc_head.hc_scale",
        });
}
