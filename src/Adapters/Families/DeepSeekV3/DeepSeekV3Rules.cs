using System.Text.Json.Nodes;

namespace Mtp.Adapters;

/// <summary>
/// DeepSeek-V3's and V3.2's rule table: HF names are kept, MTP depth k moves from <c>model.layers.{L+k}</c> to
/// <c>mtp.layers.{k}</c> (<see cref="NextNLayerRules"/>); MLA attention, and for V3.2 the sparse-attention indexer of
/// every layer (the MTP layer's included).
/// </summary>
static class DeepSeekV3Rules
{
    public static List<Rule> Build(ModelFacts f, bool indexer)
    {
        JsonObject c = f.TextConfig;
        bool qLora = c["q_lora_rank"] is JsonValue qv && qv.TryGetValue(out int _);
        bool shared = (ConfigValues.Int(c, "n_shared_experts") ?? 1) > 0; // missing: 1, transformers' and DeepSeek's default, as the model's
        bool noaux = ConfigValues.Str(c, "topk_method") == "noaux_tc";

        void Attention(Block b)
        {
            if (qLora) { b.W("self_attn.q_a_proj.weight"); b.W("self_attn.q_a_layernorm.weight"); b.W("self_attn.q_b_proj.weight"); }
            else b.W("self_attn.q_proj.weight");
            b.W("self_attn.kv_a_proj_with_mqa.weight");
            b.W("self_attn.kv_a_layernorm.weight");
            b.W("self_attn.kv_b_proj.weight");
            b.W("self_attn.o_proj.weight");
            if (!indexer) return;
            // V3.2's lightning indexer: FP8 wq_b (from the q low-rank) and wk, a LayerNorm (weight and bias) on its key,
            // and the per-head weights projection kept in BF16.
            b.W("self_attn.indexer.wq_b.weight");
            b.W("self_attn.indexer.wk.weight");
            b.W("self_attn.indexer.k_norm.weight");
            b.W("self_attn.indexer.k_norm.bias");
            b.W("self_attn.indexer.weights_proj.weight");
        }

        return NextNLayerRules.Build(f, new NextNLayerRules.Parts(Attention, shared, CorrectionBiasOptional: !noaux));
    }
}
