using Mtp.SafeTensors;

namespace Mtp.Adapters;

/// <summary>
/// What a rule does, planned in both directions: <c>ToNative</c> plans the training-layout outputs of a binding from an
/// HF checkpoint, <c>ToHf</c> its reverse. The rule tables name one of the four instances below. Quantization is not an
/// operation: the per-tensor planners apply the source's scheme (dequantize on the way in, re-quantize to the reference's
/// or recorded scheme on the way out) to whatever the operation names. Only this assembly defines operations.
/// </summary>
public abstract class RuleOperation
{
    /// <summary>
    /// Rename; a quantized source (FP8 with its scale, or packed FP4 with its scale) is dequantized, BF16 is cast to the
    /// target dtype, F32/I32 keep theirs. Reverse: re-quantize with the reused (or canonical) scale / cast back.
    /// </summary>
    public static readonly RuleOperation Rename = new RenameOperation();
    /// <summary>
    /// Routed experts: per-expert gate/up/down (or the fused transformers layout) are stacked into <c>gate_up_proj</c>
    /// [E, 2I, H] (gate rows first) and <c>down_proj</c> [E, H, I]. Reverse: split per expert.
    /// </summary>
    public static readonly RuleOperation StackExperts = new StackExpertsOperation();
    /// <summary>
    /// A per-depth copy of a shared tensor (DeepSeek MTP embedding / head): dropped, with a reason, when byte-identical to
    /// the main tensor, kept under the native name otherwise. Reverse: re-created from the main tensor.
    /// </summary>
    public static readonly RuleOperation DropIfTied = new DropIfTiedOperation();
    /// <summary>Non-text tensors carried byte for byte (both directions).</summary>
    public static readonly RuleOperation CarryThrough = new CarryThroughOperation();

    private protected RuleOperation() { }

    /// <summary>The operation's name, as rule descriptions show it.</summary>
    public abstract string Name { get; }

    /// <inheritdoc />
    public override string ToString() => Name;

    /// <summary>Checks that <paramref name="rule"/> carries what this operation needs.</summary>
    /// <exception cref="ArgumentException">It does not.</exception>
    internal virtual void Validate(Rule rule) { }

    /// <summary>Plans <paramref name="b"/>'s training-layout outputs from the HF checkpoint of <paramref name="side"/>.</summary>
    internal abstract void ToNative(Binding b, NativeSide side);

    /// <summary>Plans <paramref name="b"/>'s HF outputs from the training checkpoint of <paramref name="side"/>.</summary>
    internal abstract void ToHf(Binding b, HfSide side);

    /// <summary>The concrete HF names <paramref name="b"/> can read.</summary>
    internal virtual IEnumerable<string> HfNames(Binding b, ModelFacts facts) => new[] { b.Hf };

    /// <summary>The concrete training-layout names <paramref name="b"/> writes.</summary>
    internal virtual IEnumerable<string> NativeNames(Binding b) => new[] { b.Native };

    /// <summary>Whether one name maps to one name (so the table translates it both ways by pattern).</summary>
    internal virtual bool TranslatesOneName => true;

    /// <summary>Whether another rule may read the same HF name (a tied copy names its main tensor's source too).</summary>
    internal virtual bool MayShareHfName => false;
}

/// <summary>Rename one tensor (dequantized / cast on the way in, re-quantized / cast back on the way out).</summary>
internal sealed class RenameOperation : RuleOperation
{
    /// <inheritdoc />
    public override string Name => "Weight";

    /// <inheritdoc />
    internal override void ToNative(Binding b, NativeSide side)
    {
        if (!side.Source.TryGet(b.Hf, out var loc)) { if (!b.Rule.Optional) side.Planning.Missing.Add(b.Hf); return; }
        var p = new PlannedTensor { Name = b.Native, DType = side.Ctx.OutDType(loc, b.Rule), Shape = side.Ctx.LogicalShape(loc, b.Rule) };
        side.Ctx.AddWeightPieces(p, loc, b.Rule, fp4Allowed: false);
        if (p.Pieces.Count > 0) side.Add(p, b.Hf);
    }

    /// <inheritdoc />
    internal override void ToHf(Binding b, HfSide side)
    {
        if (!side.Source.TryGet(b.Native, out var loc))
        {
            if (!b.Rule.Optional || side.Hints.ContainsKey(b.Hf)) side.Planning.Missing.Add(b.Native);
            return;
        }
        side.Planning.Claimed.Add(b.Native);
        side.Outputs.AddRange(side.Ctx.PlanWeight(b.Hf, Src.Whole(loc), loc.Info.Shape, b.Rule, fp4: false));
    }
}

/// <summary>Routed experts: stacked into gate_up_proj / down_proj (or one tensor per expert) on the way in, split per expert on the way out.</summary>
internal sealed class StackExpertsOperation : RuleOperation
{
    /// <inheritdoc />
    public override string Name => "StackExperts";

    /// <inheritdoc />
    internal override void Validate(Rule rule)
    {
        if (rule.Experts == null) throw new ArgumentException($"rule {rule.Hf}: StackExperts needs expert names");
    }

    /// <inheritdoc />
    internal override void ToNative(Binding b, NativeSide side)
    {
        foreach (var p in side.Ctx.PlanExperts(b, side.PerExpert)) side.Add(p, p.Sources[0]);
    }

    /// <inheritdoc />
    internal override void ToHf(Binding b, HfSide side) => side.Outputs.AddRange(side.Ctx.PlanExperts(b));

    /// <summary>Per-expert gate/up/down of every expert, then the fused alternatives.</summary>
    internal override IEnumerable<string> HfNames(Binding b, ModelFacts facts)
    {
        ExpertNames x = b.Rule.Experts!;
        // Parsed once per binding, not per expert: a pattern compiles a regex, and a release has 256 experts per layer.
        NamePattern[] parts = { new(x.Gate), new(x.Up), new(x.Down) };
        for (int e = 0; e < facts.NumExperts; e++)
            foreach (NamePattern p in parts)
                yield return b.Hf + "." + p.Format(new PatternVars(E: e));
        if (x.FusedGateUp != null) yield return b.Hf + "." + x.FusedGateUp;
        if (x.FusedDown != null) yield return b.Hf + "." + x.FusedDown;
    }

    /// <summary>The two stacks.</summary>
    internal override IEnumerable<string> NativeNames(Binding b) => new[] { b.Native + ".gate_up_proj", b.Native + ".down_proj" };

    /// <inheritdoc />
    internal override bool TranslatesOneName => false;
}

/// <summary>A per-depth copy of a shared tensor: dropped when identical to the main one (kept otherwise), re-created from it on the way out.</summary>
internal sealed class DropIfTiedOperation : RuleOperation
{
    /// <inheritdoc />
    public override string Name => "DropIfTied";

    /// <inheritdoc />
    internal override void Validate(Rule rule)
    {
        if (rule.TiedTo == null) throw new ArgumentException($"rule {rule.Hf}: DropIfTied needs the main rule");
    }

    /// <inheritdoc />
    internal override bool MayShareHfName => true;

    /// <inheritdoc />
    internal override void ToNative(Binding b, NativeSide side)
    {
        if (!side.Source.TryGet(b.Hf, out var copy)) { if (!b.Rule.Optional) side.Planning.Missing.Add(b.Hf); return; }
        side.Planning.Claimed.Add(b.Hf);
        string mainName = b.Rule.TiedTo!.Hf.Text;
        if (side.Source.TryGet(mainName, out var main) && side.Tied.Same(copy, main))
        {
            side.Dropped.Add((b.Hf, $"identical to '{mainName}' (shared with the main model); re-created from it on export"));
            return;
        }
        var p = new PlannedTensor { Name = b.Native, DType = side.Ctx.OutDType(copy, b.Rule), Shape = copy.Info.Shape };
        side.Planning.Claimed.Remove(b.Hf);
        side.Ctx.AddWeightPieces(p, copy, b.Rule, fp4Allowed: false);
        p.Ops.Add($"kept: differs from '{mainName}'");
        side.Add(p, b.Hf);
    }

    /// <inheritdoc />
    internal override void ToHf(Binding b, HfSide side)
    {
        if (side.Source.TryGet(b.Native, out var kept))
        {
            side.Planning.Claimed.Add(b.Native);
            side.Outputs.AddRange(side.Ctx.PlanWeight(b.Hf, Src.Whole(kept), kept.Info.Shape, b.Rule, fp4: false));
            return;
        }
        bool wanted = side.Hints.Count > 0 ? side.Hints.ContainsKey(b.Hf) : !b.Rule.Optional;
        if (!wanted) return;
        string mainNative = b.Rule.TiedTo!.Native.Text;
        if (!side.Source.TryGet(mainNative, out var main)) { side.Planning.Missing.Add(mainNative); return; }
        foreach (var p in side.Ctx.PlanWeight(b.Hf, Src.Whole(main), main.Info.Shape, b.Rule, fp4: false))
        {
            p.Ops.Add($"re-created from '{mainNative}' (dropped as identical on import)");
            side.Outputs.Add(p);
        }
    }
}

/// <summary>Non-text tensors matched by a wildcard rule: carried byte for byte, both ways (planned for unclaimed tensors, not per binding).</summary>
internal sealed class CarryThroughOperation : RuleOperation
{
    /// <inheritdoc />
    public override string Name => "CarryThrough";

    /// <inheritdoc />
    internal override void ToNative(Binding b, NativeSide side) { }

    /// <inheritdoc />
    internal override void ToHf(Binding b, HfSide side) { }

    /// <summary>Carries <paramref name="t"/> through when a carry-through rule of <paramref name="table"/> matches it on <paramref name="side"/>'s source side.</summary>
    public static bool TryCarry(RuleTable table, TensorLocation t, PlanSide side)
    {
        bool toNative = side.Direction == ConversionDirection.ToNative;
        Rule? carry = table.Rules.FirstOrDefault(r => r.Op is CarryThroughOperation && (toNative ? r.Hf : r.Native).TryMatch(t.Name, out _));
        if (carry == null) return false;
        NamePattern from = toNative ? carry.Hf : carry.Native, to = toNative ? carry.Native : carry.Hf;
        from.TryMatch(t.Name, out var v);
        var p = new PlannedTensor { Name = to.Format(v), DType = t.Info.DType, Shape = t.Info.Shape };
        p.Sources.Add(t.Name); p.Ops.Add("carry through byte for byte (non-text tensor)"); p.Pieces.Add(new CopyPiece(Src.Whole(t)));
        side.Planning.Claimed.Add(t.Name);
        side.AddCarried(p, t);
        return true;
    }
}
