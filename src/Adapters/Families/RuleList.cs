namespace Mtp.Adapters;

/// <summary>Collects a family's rules in output order.</summary>
sealed class RuleList
{
    public readonly List<Rule> Rules = new();

    public Rule Add(string hf, string native, RuleOp op = RuleOp.Weight, LayerDomain d = LayerDomain.Global, Func<LayerContext, bool>? when = null,
        bool optional = false, Rule? tiedTo = null, ExpertNames? experts = null)
    {
        var r = new Rule(hf, native, op, d, when, optional, tiedTo, experts);
        Rules.Add(r);
        return r;
    }
}

/// <summary>Adds a decoder block's rules under an HF and a native prefix.</summary>
sealed class Block(RuleList list, string hf, string native, LayerDomain domain)
{
    /// <summary>The transformers expert names (per-expert, or fused <c>gate_up_proj</c> / <c>down_proj</c>).</summary>
    public static readonly ExpertNames HfExperts = new("{e}.gate_proj.weight", "{e}.up_proj.weight", "{e}.down_proj.weight", "gate_up_proj", "down_proj", false);

    public void W(string hfSub, string? nativeSub = null, Func<LayerContext, bool>? when = null, bool optional = false) =>
        list.Add(hf + hfSub, native + (nativeSub ?? hfSub), RuleOp.Weight, domain, when, optional);

    public void Experts(string hfSub, string nativeSub, ExpertNames names, Func<LayerContext, bool> when) =>
        list.Add(hf + hfSub, native + nativeSub, RuleOp.StackExperts, domain, when, experts: names);
}
