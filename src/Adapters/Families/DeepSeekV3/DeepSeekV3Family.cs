using System.Text.Json.Nodes;
using Mtp.SafeTensors;

namespace Mtp.Adapters;

/// <summary>
/// DeepSeek-V3 (also V3.1 / R1), DeepSeek-V3.2 and GLM-5 (<c>glm_moe_dsa</c>, stored as V3.2 is): <c>model.</c> names, MLA attention, FP8 E4M3 blocks with F32
/// <c>weight_scale_inv</c>, MTP depth k stored as decoder layer <c>model.layers.{L+k}</c>. V3.2 adds the sparse-attention
/// indexer's tensors to every layer (its FP8 scales are powers of two, <c>scale_fmt</c> "ue8m0", still stored as F32).
/// </summary>
public sealed class DeepSeekV3Family : FamilyModule
{
    /// <summary>Dense layers before the MoE ones when the config is silent (transformers' and DeepSeek's default, as the model's).</summary>
    public const int DefaultFirstDense = 3;

    /// <summary>The module for <paramref name="identity"/> (built by <see cref="FamilyRegistry"/>); <paramref name="indexer"/>
    /// for DeepSeek-V3.2's sparse-attention indexer tensors.</summary>
    public DeepSeekV3Family(FamilyIdentity identity, bool indexer = false) : base(identity, new QuantScheme(ScaleNaming.ScaleInv, DType.F32)) =>
        HasIndexer = indexer;

    /// <summary>Whether every layer carries DeepSeek-V3.2's indexer (<c>self_attn.indexer.*</c>).</summary>
    public bool HasIndexer { get; }

    /// <summary>Which decoder layers (MTP depths at L+k) are MoE: every MTP layer, and main layers from
    /// <c>first_k_dense_replace</c> on that fall on <c>moe_layer_freq</c>; none without routed experts.</summary>
    public static IReadOnlyList<bool> MoeLayers(int layers, int depth, int experts, int firstDense, int freq) =>
        Enumerable.Range(0, layers + depth).Select(i => experts > 0 && (i >= layers || (i >= firstDense && i % freq == 0))).ToList();

    /// <inheritdoc />
    protected override ModelFacts ReadFamilyFacts(FactsInput x, IEnumerable<string>? tensorNames)
    {
        int d = ConfigValues.Count(x.Text, "num_nextn_predict_layers") ?? 0;
        int e = ConfigValues.Count(x.Text, "n_routed_experts") ?? 0;
        int firstDense = ConfigValues.Count(x.Text, "first_k_dense_replace") ?? DefaultFirstDense;
        int freq = Math.Max(1, ConfigValues.Count(x.Text, "moe_layer_freq") ?? 1);
        return new ModelFacts(Id, x.ModelType, x.Layers, d, e, MoeLayers(x.Layers, d, e, firstDense, freq), false, x.Text);
    }

    /// <inheritdoc />
    protected override IReadOnlyList<Rule> Rules(ModelFacts f, JsonObject config, IReadOnlyCollection<string>? hfNames, IReadOnlyCollection<string>? nativeNames) =>
        DeepSeekV3Rules.Build(f, HasIndexer);
}
