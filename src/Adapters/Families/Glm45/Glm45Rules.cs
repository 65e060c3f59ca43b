using System.Text.Json.Nodes;

namespace Mtp.Adapters;

/// <summary>GLM-4.5's rule table: <see cref="NextNLayerRules"/> with GQA attention (names kept, MTP to <c>mtp.layers.{k}</c>).</summary>
static class Glm45Rules
{
    public static List<Rule> Build(ModelFacts f)
    {
        JsonObject c = f.TextConfig;
        bool bias = ConfigValues.True(c, "attention_bias");
        bool qkNorm = ConfigValues.True(c, "use_qk_norm");

        void Attention(Block b)
        {
            foreach (string p in new[] { "q_proj", "k_proj", "v_proj" })
            {
                b.W($"self_attn.{p}.weight");
                if (bias) b.W($"self_attn.{p}.bias");
            }
            b.W("self_attn.o_proj.weight");
            if (qkNorm) { b.W("self_attn.q_norm.weight"); b.W("self_attn.k_norm.weight"); }
        }

        // Shared experts: transformers' Glm4MoeMoE always builds them (n_shared_experts wide); the router's correction
        // bias is always there (noaux_tc is the only routing GLM-4.5 has).
        return NextNLayerRules.Build(f, new NextNLayerRules.Parts(Attention, SharedExperts: true, CorrectionBiasOptional: false));
    }
}
