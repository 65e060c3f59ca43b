using System.Text.Json.Nodes;

namespace Mtp.Adapters;

/// <summary>
/// Everything specific to one model family: the facts its config.json states, its quantization scheme, the layout
/// variants it has on disk, and its rule table. A new family is one subclass in its own folder, registered in
/// <see cref="FamilyRegistry"/>.
/// </summary>
public abstract class FamilyModule
{
    /// <summary>Creates the module of <paramref name="identity"/> with quantization scheme <paramref name="quant"/>.</summary>
    protected FamilyModule(FamilyIdentity identity, QuantScheme quant)
    {
        Identity = identity;
        Quant = quant;
    }

    /// <summary>Id and model_type spellings.</summary>
    public FamilyIdentity Identity { get; }
    /// <summary>Family id.</summary>
    public string Id => Identity.Id;
    /// <summary>Scale naming and the defaults of new scales.</summary>
    public QuantScheme Quant { get; }
    /// <summary>
    /// Whether the HF release already stores MTP depth k under <c>mtp.layers.{k}</c>, the training layout's name (Qwen's
    /// do; DeepSeek's use <c>model.layers.{L+k}</c> or <c>mtp.{k}</c>, so such a name beside HF FP8 weights means mixed files).
    /// </summary>
    public virtual bool HfMtpUsesTrainingNames => false;

    /// <summary>Names an earlier training layout used for this family, still read as input (null: none).</summary>
    public virtual FormerTrainingNames? FormerNames => null;

    /// <summary>
    /// Reads the facts of <paramref name="config"/>. <paramref name="tensorNames"/> (optional) settles what the config leaves
    /// open (Qwen3-Next's MTP depth when <c>num_nextn_predict_layers</c> is absent).
    /// </summary>
    public ModelFacts ReadFacts(JsonObject config, IEnumerable<string>? tensorNames = null)
    {
        JsonObject tc = ConfigValues.TextConfig(config);
        int layers = ConfigValues.ReqInt(tc, "num_hidden_layers", Id);
        if (layers < 0) throw new AdapterException(AdapterErrorKind.Malformed, "config.json: num_hidden_layers is negative");
        return ReadFamilyFacts(new FactsInput(config, tc, ConfigValues.Str(config, "model_type") ?? "", layers), tensorNames);
    }

    /// <summary>The family's facts once the fields every family has are read.</summary>
    protected abstract ModelFacts ReadFamilyFacts(FactsInput input, IEnumerable<string>? tensorNames);

    /// <summary>
    /// The rule table for a config. <paramref name="hfNames"/> / <paramref name="nativeNames"/> (the checkpoint's names,
    /// when known) pick between source layout variants (DeepSeek-V4's legacy MTP layout).
    /// </summary>
    public RuleTable BuildTable(JsonObject config, IReadOnlyCollection<string>? hfNames = null, IReadOnlyCollection<string>? nativeNames = null)
    {
        // The names settle what the config leaves open (an unstated MTP depth); a training checkpoint exported without a
        // record of its source has only its own names.
        ModelFacts f = ReadFacts(config, hfNames ?? nativeNames);
        return new RuleTable(Id, f, Rules(f, config, hfNames, nativeNames), CompressedTensors.SchemeFor(config, Quant));
    }

    /// <summary>The family's rules for facts <paramref name="f"/>, in output order.</summary>
    protected abstract IReadOnlyList<Rule> Rules(ModelFacts f, JsonObject config, IReadOnlyCollection<string>? hfNames, IReadOnlyCollection<string>? nativeNames);
}

/// <summary>What every family's facts start from.</summary>
/// <param name="Config">The whole config.json.</param>
/// <param name="Text">The object holding the text fields.</param>
/// <param name="ModelType">Top-level <c>model_type</c> ("" when absent).</param>
/// <param name="Layers">num_hidden_layers.</param>
public readonly record struct FactsInput(JsonObject Config, JsonObject Text, string ModelType, int Layers);
