using System.Text.Json.Nodes;
using Mtp.SafeTensors;

namespace Mtp.Adapters;

/// <summary>
/// DeepSeek-V4 (V4-Flash, Base/Pro scale variants): DeepSeek's module names without <c>model.</c>, FP8 weights with E8M0
/// <c>.scale</c> tensors, routed experts packed FP4 with E8M0 per 32 columns, MTP under <c>mtp.{k}</c> (or the legacy
/// <c>model.layers.{L+k}</c> layout, see <see cref="DeepSeekV4Layout"/>).
/// </summary>
public sealed class DeepSeekV4Family : FamilyModule
{
    /// <summary>The module for <paramref name="identity"/> (built by <see cref="FamilyRegistry"/>).</summary>
    public DeepSeekV4Family(FamilyIdentity identity) : base(identity, new QuantScheme(ScaleNaming.DotScale, DType.F8_E8M0)) { }

    /// <inheritdoc />
    public override FormerTrainingNames? FormerNames => DeepSeekV4FormerNames.Table;

    /// <inheritdoc />
    protected override ModelFacts ReadFamilyFacts(FactsInput x, IEnumerable<string>? tensorNames)
    {
        int d = ConfigValues.Count(x.Text, "num_nextn_predict_layers") ?? 0;
        int e = ConfigValues.Count(x.Text, "n_routed_experts") ?? 0;
        var moe = Enumerable.Range(0, x.Layers + d).Select(_ => e > 0).ToList(); // every layer routes when there are experts
        return new ModelFacts(Id, x.ModelType, x.Layers, d, e, moe, false, x.Text);
    }

    /// <inheritdoc />
    protected override IReadOnlyList<Rule> Rules(ModelFacts f, JsonObject config, IReadOnlyCollection<string>? hfNames, IReadOnlyCollection<string>? nativeNames) =>
        DeepSeekV4Rules.Build(f, DeepSeekV4Layout.IsLegacyMtp(f, hfNames, nativeNames));
}
