using System.Text.Json.Nodes;
using Mtp.SafeTensors;

namespace Mtp.Adapters;

/// <summary>
/// Xiaomi MiMo-V2-Flash (<c>mimo_v2_flash</c>): hybrid sliding-window / full attention (q/k/v/o projections, V head
/// narrower than Q/K, <c>attention_sink_bias</c> on sliding layers), a dense first layer then MoE layers (sigmoid router
/// with correction bias, no shared expert), and MTP depths under <c>model.mtp.layers.{k}</c> (<c>enorm</c>, <c>hnorm</c>,
/// <c>eh_proj</c>, one sliding-window block with a dense MLP and <c>pre_mlp_layernorm</c>, <c>final_layernorm</c>).
/// The release is block FP8 with F32 <c>weight_scale_inv</c>, 128x128 blocks, except the full-attention k_proj, blocked per
/// KV head (<see cref="MimoV2FlashLayers.FullAttentionKeyHeadRows"/>). Its config.json does not state the MTP depth: it is read
/// from <c>num_nextn_predict_layers</c> when present, else counted from the tensor names. Sources: src/Adapters/README.md,
/// "MiMo-V2-Flash".
/// </summary>
public sealed class MimoV2FlashFamily : FamilyModule
{
    /// <summary>The module for <paramref name="identity"/> (built by <see cref="FamilyRegistry"/>).</summary>
    public MimoV2FlashFamily(FamilyIdentity identity) : base(identity, new QuantScheme(ScaleNaming.ScaleInv, DType.F32) { RowChunks = MimoV2FlashLayers.FullAttentionKeyHeadRows }) { }

    /// <inheritdoc />
    protected override ModelFacts ReadFamilyFacts(FactsInput x, IEnumerable<string>? tensorNames)
    {
        int d = ConfigValues.Count(x.Text, "num_nextn_predict_layers") ?? (tensorNames == null ? 0 : MtpNames.MimoV2DepthCount(tensorNames));
        int e = ConfigValues.Count(x.Text, "n_routed_experts") ?? 0;
        var main = MimoV2FlashLayers.MoeMain(x.Text, x.Layers);
        var moe = main.Select(m => m && e > 0).Concat(Enumerable.Repeat(false, d)).ToList(); // MTP blocks are dense
        return new ModelFacts(Id, x.ModelType, x.Layers, d, moe.Any(m => m) ? e : 0, moe, false, x.Text);
    }

    /// <inheritdoc />
    protected override IReadOnlyList<Rule> Rules(ModelFacts f, JsonObject config, IReadOnlyCollection<string>? hfNames, IReadOnlyCollection<string>? nativeNames) =>
        MimoRules.BuildV2Flash(f, MimoV2FlashLayers.Read(f.TextConfig, f.NumHiddenLayers));
}
