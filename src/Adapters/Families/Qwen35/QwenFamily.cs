using System.Text.Json.Nodes;
using Mtp.SafeTensors;

namespace Mtp.Adapters;

/// <summary>
/// Qwen3.5 (multimodal: text under <c>model.language_model.</c>, vision carried through) and Qwen3-Next (text only,
/// <c>model.</c>): hybrid linear / full attention, FP8 copies with <c>weight_scale_inv</c>, MTP under top-level
/// <c>mtp.*</c> with fusion modules shared by every depth.
/// </summary>
public sealed class QwenFamily : FamilyModule
{
    /// <summary>The module for <paramref name="identity"/>; <paramref name="next"/> for Qwen3-Next's names.</summary>
    public QwenFamily(FamilyIdentity identity, bool next) : base(identity, new QuantScheme(ScaleNaming.ScaleInv, DType.F32)) => IsNext = next;

    /// <summary>Qwen3-Next (plain <c>model.</c> prefix, fused <c>in_proj_qkvz</c> / <c>in_proj_ba</c>).</summary>
    public bool IsNext { get; }

    /// <inheritdoc/>
    public override bool HfMtpUsesTrainingNames => true;

    /// <summary>Which decoder layers (MTP depths at L+k) are MoE: every MTP layer, and main layers not in
    /// <c>mlp_only_layers</c> with (i+1) % <c>decoder_sparse_step</c> == 0; none without experts.</summary>
    public static IReadOnlyList<bool> MoeLayers(int layers, int depth, int experts, ISet<int> mlpOnly, int step) =>
        Enumerable.Range(0, layers + depth).Select(i => experts > 0 && (i >= layers || (!mlpOnly.Contains(i) && (i + 1) % step == 0))).ToList();

    /// <inheritdoc />
    protected override ModelFacts ReadFamilyFacts(FactsInput x, IEnumerable<string>? tensorNames)
    {
        int? d = ConfigValues.Count(x.Text, IsNext ? "num_nextn_predict_layers" : "mtp_num_hidden_layers");
        if (d == null && tensorNames != null) d = MtpNames.LayerDepthCount(tensorNames);
        int e = ConfigValues.Count(x.Text, "num_experts") ?? 0;
        int step = Math.Max(1, ConfigValues.Count(x.Text, "decoder_sparse_step") ?? 1);
        var moe = MoeLayers(x.Layers, d ?? 0, e, MlpOnlyLayers(x.Text), step);
        return new ModelFacts(Id, x.ModelType, x.Layers, d ?? 0, e, moe, true, x.Text);
    }

    /// <summary>Qwen's <c>mlp_only_layers</c>: absent, or an array of layer indices.</summary>
    static HashSet<int> MlpOnlyLayers(JsonObject tc)
    {
        var set = new HashSet<int>();
        switch (tc["mlp_only_layers"])
        {
            case null: return set;
            case JsonArray a:
                foreach (var x in a)
                    set.Add(x is JsonValue v && v.TryGetValue(out int i) ? i
                        : throw new AdapterException(AdapterErrorKind.Malformed, $"config.json: 'mlp_only_layers' must hold integers, not {(x is null ? "null" : ConfigValues.Shown(x))}"));
                return set;
            case var n: throw new AdapterException(AdapterErrorKind.Malformed, $"config.json: 'mlp_only_layers' must be an array, not {ConfigValues.Shown(n)}");
        }
    }

    /// <inheritdoc />
    protected override IReadOnlyList<Rule> Rules(ModelFacts f, JsonObject config, IReadOnlyCollection<string>? hfNames, IReadOnlyCollection<string>? nativeNames) =>
        QwenRules.Build(f, config, IsNext);
}
