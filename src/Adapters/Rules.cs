namespace Mtp.Adapters;

/// <summary>Which index a rule's pattern ranges over.</summary>
public enum LayerDomain
{
    /// <summary>No layer index.</summary>
    Global,
    /// <summary><c>{i}</c> over the main decoder layers [0, L).</summary>
    Main,
    /// <summary><c>{k}</c> over the MTP depths [0, D).</summary>
    Mtp,
}

/// <summary>The layer a rule is instantiated for, as its condition sees it.</summary>
/// <param name="IsMtp">Whether this is an MTP depth.</param>
/// <param name="Index">i for main layers, k for MTP depths, 0 for global rules.</param>
/// <param name="HfLayer">The decoder-layer index (i, or L + k for MTP depths).</param>
public readonly record struct LayerContext(bool IsMtp, int Index, int HfLayer);

/// <summary>Per-expert and fused sub-names of a routed-expert group (relative to the rule's prefix).</summary>
/// <param name="Gate">Per-expert gate, e.g. <c>{e}.gate_proj.weight</c>.</param>
/// <param name="Up">Per-expert up.</param>
/// <param name="Down">Per-expert down.</param>
/// <param name="FusedGateUp">Fused HF name (<c>gate_up_proj</c>) when the family has that layout, else null.</param>
/// <param name="FusedDown">Fused HF down name.</param>
/// <param name="Fp4">Whether per-expert weights may be packed FP4 (I8 + E8M0 per 32 columns).</param>
public sealed record ExpertNames(string Gate, string Up, string Down, string? FusedGateUp, string? FusedDown, bool Fp4);

/// <summary>One declarative rule: an HF name pattern, a training-layout name pattern and an operation.</summary>
public sealed class Rule
{
    /// <summary>HF-side pattern (for <see cref="RuleOperation.StackExperts"/>: the experts' prefix).</summary>
    public NamePattern Hf { get; }
    /// <summary>Training-side pattern (for <see cref="RuleOperation.StackExperts"/>: the experts' prefix).</summary>
    public NamePattern Native { get; }
    /// <summary>What the rule does, planned in both directions (one of <see cref="RuleOperation"/>'s instances).</summary>
    public RuleOperation Op { get; }
    /// <summary>Index domain.</summary>
    public LayerDomain Domain { get; }
    /// <summary>Condition on the layer (null: always).</summary>
    public Func<LayerContext, bool>? When { get; }
    /// <summary>Absent sources are fine (otherwise they are reported missing).</summary>
    public bool Optional { get; }
    /// <summary>For <see cref="RuleOperation.DropIfTied"/>: the rule of the main tensor this one copies.</summary>
    public Rule? TiedTo { get; private init; }
    /// <summary>For <see cref="RuleOperation.StackExperts"/>: the expert sub-names.</summary>
    public ExpertNames? Experts { get; private init; }
    /// <summary>A rename rule: one HF tensor to one training-layout tensor.</summary>
    /// <param name="hf">HF-side pattern.</param>
    /// <param name="native">Training-side pattern.</param>
    /// <param name="domain">Index domain.</param>
    /// <param name="when">Condition on the layer (null: always).</param>
    /// <param name="optional">Absent sources are fine.</param>
    public Rule(string hf, string native, LayerDomain domain = LayerDomain.Global, Func<LayerContext, bool>? when = null, bool optional = false)
        : this(RuleOperation.Rename, hf, native, domain, when, optional) { }

    Rule(RuleOperation op, string hf, string native, LayerDomain domain, Func<LayerContext, bool>? when, bool optional)
    {
        Hf = new NamePattern(hf);
        Native = new NamePattern(native);
        Op = op;
        Domain = domain;
        When = when;
        Optional = optional;
        if (Hf.HasWildcard != Native.HasWildcard) throw new ArgumentException($"rule {hf} -> {native}: wildcard on one side only");
    }

    /// <summary>A routed-expert group under the prefixes <paramref name="hf"/> / <paramref name="native"/> (<see cref="RuleOperation.StackExperts"/>).</summary>
    public static Rule StackedExperts(string hf, string native, ExpertNames names, LayerDomain domain, Func<LayerContext, bool>? when = null) =>
        new(RuleOperation.StackExperts, hf, native, domain, when, false) { Experts = names };

    /// <summary>A per-depth copy of the tensor of <paramref name="main"/> (<see cref="RuleOperation.DropIfTied"/>).</summary>
    public static Rule TiedCopy(string hf, string native, Rule main, LayerDomain domain, bool optional = false) =>
        new(RuleOperation.DropIfTied, hf, native, domain, null, optional) { TiedTo = main };

    /// <summary>Non-text tensors matched by a wildcard pattern, carried byte for byte (<see cref="RuleOperation.CarryThrough"/>).</summary>
    public static Rule Carried(string hf, string native, bool optional = false) =>
        new(RuleOperation.CarryThrough, hf, native, LayerDomain.Global, null, optional);

    /// <inheritdoc />
    public override string ToString() => $"{Hf} -> {Native} ({Op})";
}

/// <summary>A rule instantiated for one layer: concrete names on both sides.</summary>
/// <param name="Rule">The rule.</param>
/// <param name="Vars">Its variables.</param>
/// <param name="Hf">Concrete HF name (prefix for experts).</param>
/// <param name="Native">Concrete training-layout name (prefix for experts).</param>
public sealed record Binding(Rule Rule, PatternVars Vars, string Hf, string Native)
{
    /// <summary>The layer context this binding was made for.</summary>
    public LayerContext Context(int numLayers) => Rule.Domain switch
    {
        LayerDomain.Main => new LayerContext(false, Vars.I!.Value, Vars.I.Value),
        LayerDomain.Mtp => new LayerContext(true, Vars.K!.Value, numLayers + Vars.K.Value),
        _ => default,
    };
}

/// <summary>
/// A family's declarative table, instantiated for one config: the rules, the index ranges, and how scales are named.
/// Both directions are derived from it; building it checks that no two rules produce the same name.
/// </summary>
public sealed class RuleTable
{
    /// <summary>Family id.</summary>
    public string Family { get; }
    /// <summary>Facts read from config.json.</summary>
    public ModelFacts Facts { get; }
    /// <summary>The rules, in output order.</summary>
    public IReadOnlyList<Rule> Rules { get; }
    /// <summary>The family's quantization scheme: scale names, and the defaults of scales written without a reference.</summary>
    public QuantScheme Quant { get; }
    /// <summary>Every concrete binding (wildcard rules excluded), in rule order.</summary>
    public IReadOnlyList<Binding> Bindings { get; }

    /// <summary>Scale tensor name for a quantized weight name.</summary>
    public string ScaleNameOf(string weight) => Quant.ScaleNameOf(weight);

    /// <summary>Builds the table and checks it for collisions.</summary>
    /// <exception cref="AdapterException">Two rules (or two instances of one) produce the same name on either side.</exception>
    public RuleTable(string family, ModelFacts facts, IReadOnlyList<Rule> rules, QuantScheme quant)
    {
        Family = family;
        Facts = facts;
        Rules = rules;
        Quant = quant;
        Bindings = Expand().ToList();
        CheckCollisions();
    }

    IEnumerable<Binding> Expand()
    {
        foreach (Rule r in Rules)
        {
            if (r.Hf.HasWildcard) continue;
            IEnumerable<PatternVars> vars = r.Domain switch
            {
                LayerDomain.Main => Enumerable.Range(0, Facts.NumHiddenLayers).Select(i => new PatternVars(I: i)),
                LayerDomain.Mtp => Enumerable.Range(0, Facts.MtpDepth).Select(k => new PatternVars(K: k)),
                _ => new[] { new PatternVars() },
            };
            foreach (PatternVars v in vars)
            {
                var b = new Binding(r, v, r.Hf.Format(v), r.Native.Format(v));
                if (r.When != null && !r.When(b.Context(Facts.NumHiddenLayers))) continue;
                yield return b;
            }
        }
    }

    /// <summary>Concrete HF weight names a binding can read (per-expert and fused alternatives for experts).</summary>
    public IEnumerable<string> HfNames(Binding b) => b.Rule.Op.HfNames(b, Facts);

    /// <summary>Concrete training-layout names a binding writes (stacked layout).</summary>
    public static IEnumerable<string> NativeNames(Binding b) => b.Rule.Op.NativeNames(b);

    void CheckCollisions()
    {
        var hf = new Dictionary<string, Rule>(StringComparer.Ordinal);
        var nat = new Dictionary<string, Rule>(StringComparer.Ordinal);
        foreach (Binding b in Bindings)
        {
            foreach (string n in HfNames(b))
                if (!hf.TryAdd(n, b.Rule) && !b.Rule.Op.MayShareHfName)
                    throw new AdapterException(AdapterErrorKind.Inconsistent, $"rule table {Family}: rules '{hf[n]}' and '{b.Rule}' both read '{n}'");
            foreach (string n in NativeNames(b))
                if (!nat.TryAdd(n, b.Rule))
                    throw new AdapterException(AdapterErrorKind.Inconsistent, $"rule table {Family}: rules '{nat[n]}' and '{b.Rule}' both produce '{n}'");
        }
    }

    /// <summary>Training-layout name of an HF tensor name by matching the table (null: no rule claims it).</summary>
    public string? ToNativeName(string hfName) => Translate(hfName, toNative: true);

    /// <summary>HF name of a training-layout tensor name: the same table read backwards (null: no rule claims it).</summary>
    public string? ToHfName(string nativeName) => Translate(nativeName, toNative: false);

    string? Translate(string name, bool toNative)
    {
        foreach (Rule r in Rules)
        {
            NamePattern from = toNative ? r.Hf : r.Native, to = toNative ? r.Native : r.Hf;
            if (!r.Op.TranslatesOneName) continue;
            if (!from.TryMatch(name, out var v) || !InDomain(r, v)) continue;
            return to.Format(v);
        }
        return null;
    }

    bool InDomain(Rule r, PatternVars v)
    {
        if (r.Domain == LayerDomain.Main && (v.I is not int i || i >= Facts.NumHiddenLayers)) return false;
        if (r.Domain == LayerDomain.Mtp && (v.K is not int k || k >= Facts.MtpDepth)) return false;
        if (r.When != null && r.Domain != LayerDomain.Global)
        {
            var ctx = r.Domain == LayerDomain.Main ? new LayerContext(false, v.I!.Value, v.I.Value) : new LayerContext(true, v.K!.Value, Facts.NumHiddenLayers + v.K!.Value);
            if (!r.When(ctx)) return false;
        }
        return true;
    }
}
