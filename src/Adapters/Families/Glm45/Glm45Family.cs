using System.Text.Json.Nodes;
using Mtp.SafeTensors;

namespace Mtp.Adapters;

/// <summary>
/// GLM-4.5 / 4.6 / 4.7 (<c>glm4_moe</c>): DeepSeek-V3's checkpoint shape (<see cref="NextNLayerRules"/>: dense then
/// MoE layers, sigmoid router with correction bias, shared experts, MTP depth k as decoder layer <c>model.layers.{L+k}</c>
/// with <c>eh_proj</c> / <c>enorm</c> / <c>hnorm</c> / <c>shared_head</c>) with GQA attention: <c>q_proj</c> /
/// <c>k_proj</c> / <c>v_proj</c> with biases when <c>attention_bias</c>, <c>o_proj</c> without, and per-head
/// <c>q_norm</c> / <c>k_norm</c> when <c>use_qk_norm</c>. Sources: src/Adapters/README.md, "GLM-4.5".
/// </summary>
public sealed class Glm45Family : FamilyModule
{
    /// <summary>Dense layers before the MoE ones when the config is silent (transformers' <c>Glm4MoeConfig</c> default).</summary>
    public const int DefaultFirstDense = 1;

    /// <summary>The module for <paramref name="identity"/> (built by <see cref="FamilyRegistry"/>). FP8 copies are block
    /// FP8 with F32 <c>weight_scale_inv</c>, as DeepSeek-V3's.</summary>
    public Glm45Family(FamilyIdentity identity) : base(identity, new QuantScheme(ScaleNaming.ScaleInv, DType.F32)) { }

    /// <inheritdoc />
    protected override ModelFacts ReadFamilyFacts(FactsInput x, IEnumerable<string>? tensorNames)
    {
        int d = ConfigValues.Count(x.Text, "num_nextn_predict_layers") ?? 0;
        int e = ConfigValues.Count(x.Text, "n_routed_experts") ?? 0;
        int firstDense = ConfigValues.Count(x.Text, "first_k_dense_replace") ?? DefaultFirstDense;
        var moe = Enumerable.Range(0, x.Layers + d).Select(i => e > 0 && i >= firstDense).ToList(); // MTP layers are past every dense one
        return new ModelFacts(Id, x.ModelType, x.Layers, d, e, moe, false, x.Text);
    }

    /// <inheritdoc />
    protected override IReadOnlyList<Rule> Rules(ModelFacts f, JsonObject config, IReadOnlyCollection<string>? hfNames, IReadOnlyCollection<string>? nativeNames) =>
        Glm45Rules.Build(f);
}
