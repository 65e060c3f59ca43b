using Mtp.SafeTensors;

namespace Mtp.Adapters;

/// <summary>
/// What a rule does, planned in both directions: <see cref="ToNative"/> plans the training-layout outputs of a binding from
/// an HF checkpoint, <see cref="ToHf"/> its reverse. The rule tables name an operation with <see cref="RuleOp"/>;
/// <see cref="Of"/> is the one place that maps the name to the object. Quantization is not an operation: the per-tensor
/// planners apply the source's scheme (dequantize on the way in, re-quantize to the reference's or recorded scheme on the
/// way out) to whatever the operation names.
/// </summary>
internal abstract class RuleOperation
{
    static readonly RuleOperation Rename = new RenameOperation(), Stack = new StackExpertsOperation(),
        Tied = new DropIfTiedOperation(), Carry = new CarryThroughOperation();

    /// <summary>The operation a table's <see cref="RuleOp"/> names.</summary>
    public static RuleOperation Of(RuleOp op) => op switch
    {
        RuleOp.Weight => Rename,
        RuleOp.StackExperts => Stack,
        RuleOp.DropIfTied => Tied,
        RuleOp.CarryThrough => Carry,
        _ => throw new ArgumentOutOfRangeException(nameof(op), op, "unknown rule operation"),
    };

    /// <summary>Plans <paramref name="b"/>'s training-layout outputs from the HF checkpoint of <paramref name="side"/>.</summary>
    public abstract void ToNative(Binding b, NativeSide side);

    /// <summary>Plans <paramref name="b"/>'s HF outputs from the training checkpoint of <paramref name="side"/>.</summary>
    public abstract void ToHf(Binding b, HfSide side);

    /// <summary>The concrete HF names <paramref name="b"/> can read.</summary>
    public virtual IEnumerable<string> HfNames(Binding b, ModelFacts facts) => new[] { b.Hf };

    /// <summary>The concrete training-layout names <paramref name="b"/> writes.</summary>
    public virtual IEnumerable<string> NativeNames(Binding b) => new[] { b.Native };

    /// <summary>Whether one name maps to one name (so the table translates it both ways by pattern).</summary>
    public virtual bool TranslatesOneName => true;

    /// <summary>Whether another rule may read the same HF name (a tied copy names its main tensor's source too).</summary>
    public virtual bool MayShareHfName => false;
}

/// <summary>Rename one tensor (dequantized / cast on the way in, re-quantized / cast back on the way out).</summary>
internal sealed class RenameOperation : RuleOperation
{
    /// <inheritdoc />
    public override void ToNative(Binding b, NativeSide side)
    {
        if (!side.Source.TryGet(b.Hf, out var loc)) { if (!b.Rule.Optional) side.Planning.Missing.Add(b.Hf); return; }
        var p = new PlannedTensor { Name = b.Native, DType = side.Ctx.OutDType(loc, b.Rule), Shape = side.Ctx.LogicalShape(loc, b.Rule) };
        side.Ctx.AddWeightPieces(p, loc, b.Rule, fp4Allowed: false);
        if (p.Pieces.Count > 0) side.Add(p, b.Hf);
    }

    /// <inheritdoc />
    public override void ToHf(Binding b, HfSide side)
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
    public override void ToNative(Binding b, NativeSide side)
    {
        foreach (var p in side.Ctx.PlanExperts(b, side.PerExpert)) side.Add(p, p.Sources[0]);
    }

    /// <inheritdoc />
    public override void ToHf(Binding b, HfSide side) => side.Outputs.AddRange(side.Ctx.PlanExperts(b));

    /// <summary>Per-expert gate/up/down of every expert, then the fused alternatives.</summary>
    public override IEnumerable<string> HfNames(Binding b, ModelFacts facts)
    {
        ExpertNames x = b.Rule.Experts!;
        for (int e = 0; e < facts.NumExperts; e++)
            foreach (string s in new[] { x.Gate, x.Up, x.Down })
                yield return b.Hf + "." + new NamePattern(s).Format(new PatternVars(E: e));
        if (x.FusedGateUp != null) yield return b.Hf + "." + x.FusedGateUp;
        if (x.FusedDown != null) yield return b.Hf + "." + x.FusedDown;
    }

    /// <summary>The two stacks.</summary>
    public override IEnumerable<string> NativeNames(Binding b) => new[] { b.Native + ".gate_up_proj", b.Native + ".down_proj" };

    /// <inheritdoc />
    public override bool TranslatesOneName => false;
}

/// <summary>A per-depth copy of a shared tensor: dropped when identical to the main one (kept otherwise), re-created from it on the way out.</summary>
internal sealed class DropIfTiedOperation : RuleOperation
{
    /// <inheritdoc />
    public override bool MayShareHfName => true;

    /// <inheritdoc />
    public override void ToNative(Binding b, NativeSide side)
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
    public override void ToHf(Binding b, HfSide side)
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
    public override void ToNative(Binding b, NativeSide side) { }

    /// <inheritdoc />
    public override void ToHf(Binding b, HfSide side) { }

    /// <summary>Carries <paramref name="t"/> through when a carry-through rule of <paramref name="table"/> matches it on <paramref name="side"/>'s source side.</summary>
    public static bool TryCarry(RuleTable table, TensorLocation t, PlanSide side)
    {
        bool toNative = side.Direction == ConversionDirection.ToNative;
        Rule? carry = table.Rules.FirstOrDefault(r => r.Op == RuleOp.CarryThrough && (toNative ? r.Hf : r.Native).TryMatch(t.Name, out _));
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
