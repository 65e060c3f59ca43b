namespace Mtp.Adapters;

/// <summary>Collects a family's rules in output order.</summary>
sealed class RuleList
{
    public readonly List<Rule> Rules = new();

    public Rule Add(Rule r)
    {
        Rules.Add(r);
        return r;
    }

    public Rule Add(string hf, string native, LayerDomain d = LayerDomain.Global, Func<LayerContext, bool>? when = null, bool optional = false) =>
        Add(new Rule(hf, native, d, when, optional));
}

/// <summary>Adds a decoder block's rules under an HF and a native prefix.</summary>
sealed class Block(RuleList list, string hf, string native, LayerDomain domain)
{
    /// <summary>The transformers expert names (per-expert, or fused <c>gate_up_proj</c> / <c>down_proj</c>).</summary>
    public static readonly ExpertNames HfExperts = new("{e}.gate_proj.weight", "{e}.up_proj.weight", "{e}.down_proj.weight", "gate_up_proj", "down_proj", false);

    public void W(string hfSub, string? nativeSub = null, Func<LayerContext, bool>? when = null, bool optional = false) =>
        list.Add(hf + hfSub, native + (nativeSub ?? hfSub), domain, when, optional);

    public void Experts(string hfSub, string nativeSub, ExpertNames names, Func<LayerContext, bool> when) =>
        list.Add(Rule.StackedExperts(hf + hfSub, native + nativeSub, names, domain, when));
}
