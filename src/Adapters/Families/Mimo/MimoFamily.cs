using System.Text.Json.Nodes;
using Mtp.SafeTensors;

namespace Mtp.Adapters;

/// <summary>
/// Xiaomi MiMo-7B (<c>mimo</c>): a Qwen2 main model (GQA with q/k/v biases, dense SwiGLU MLP) whose MTP depth k is stored
/// under <c>model.mtp_layers.{k}</c>: <c>token_layernorm</c>, <c>hidden_layernorm</c>, <c>input_proj</c> (over
/// [hidden, embedding], the reverse of DeepSeek's <c>eh_proj</c> order), one Qwen2 decoder block, and
/// <c>final_layernorm</c>; embedding and head are the main model's (no copies). Sources: src/Adapters/README.md, "MiMo".
/// </summary>
public sealed class MimoFamily : FamilyModule
{
    /// <summary>The module for <paramref name="identity"/> (built by <see cref="FamilyRegistry"/>). The release is BF16;
    /// an FP8 copy would use DeepSeek's <c>weight_scale_inv</c> naming.</summary>
    public MimoFamily(FamilyIdentity identity) : base(identity, new QuantScheme(ScaleNaming.ScaleInv, DType.F32)) { }

    /// <inheritdoc />
    protected override ModelFacts ReadFamilyFacts(FactsInput x, IEnumerable<string>? tensorNames)
    {
        int d = ConfigValues.Count(x.Text, "num_nextn_predict_layers") ?? 0;
        var dense = Enumerable.Repeat(false, x.Layers + d).ToList();
        return new ModelFacts(Id, x.ModelType, x.Layers, d, 0, dense, false, x.Text);
    }

    /// <inheritdoc />
    protected override IReadOnlyList<Rule> Rules(ModelFacts f, JsonObject config, IReadOnlyCollection<string>? hfNames, IReadOnlyCollection<string>? nativeNames) =>
        MimoRules.Build(f);
}
