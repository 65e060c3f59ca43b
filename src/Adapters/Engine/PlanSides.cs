using Mtp.SafeTensors;

namespace Mtp.Adapters;

/// <summary>
/// One direction of planning: the checkpoint read, the state shared by the operations, and the outputs planned so far.
/// <see cref="PlanBindings"/> is the one loop over a table's bindings both directions run; each binding's
/// <see cref="RuleOperation"/> plans its side of it.
/// </summary>
internal abstract class PlanSide
{
    /// <summary>The checkpoint the outputs are made from.</summary>
    public required Checkpoint Source { get; init; }
    /// <summary>Claimed, missing and unknown source tensors.</summary>
    public required PlanningState Planning { get; init; }
    /// <summary>The outputs planned so far.</summary>
    public List<PlannedTensor> Outputs { get; } = new();
    /// <summary>Which way this side plans.</summary>
    public abstract ConversionDirection Direction { get; }

    /// <summary>Plans every binding of <paramref name="table"/> with its operation, then the carry-through rules; the rest is unknown.</summary>
    public void PlanBindings(RuleTable table)
    {
        foreach (Binding b in table.Bindings) Plan(b.Rule.Op, b);
        foreach (TensorLocation t in Source.Tensors)
        {
            if (Planning.Claimed.Contains(t.Name)) continue;
            if (!CarryThroughOperation.TryCarry(table, t, this)) Planning.Unknown.Add(t.Name);
        }
    }

    /// <summary>Plans <paramref name="b"/> in this side's direction.</summary>
    protected abstract void Plan(RuleOperation op, Binding b);

    /// <summary>Adds a carried-through output (its position is the side's to decide).</summary>
    public abstract void AddCarried(PlannedTensor p, TensorLocation source);
}

/// <summary>HF -> training layout: reads an HF checkpoint; outputs keep the order of their first source.</summary>
internal sealed class NativeSide : PlanSide
{
    /// <summary>Per-source-tensor planning (dequantization, expert stacking).</summary>
    public required NativePlanContext Ctx { get; init; }
    /// <summary>Compares MTP copies with the main tensor.</summary>
    public required TiedCopies Tied { get; init; }
    /// <summary>One tensor per expert instead of stacks.</summary>
    public required bool PerExpert { get; init; }
    /// <summary>Source tensor name -> position in the checkpoint.</summary>
    public required Dictionary<string, int> Order { get; init; }
    /// <summary>Source tensors left out on purpose, with the reason.</summary>
    public List<(string, string)> Dropped { get; } = new();

    /// <inheritdoc />
    public override ConversionDirection Direction => ConversionDirection.ToNative;

    /// <inheritdoc />
    protected override void Plan(RuleOperation op, Binding b) => op.ToNative(b, this);

    /// <summary>Adds <paramref name="p"/>, ordered by the position of <paramref name="firstSource"/>.</summary>
    public void Add(PlannedTensor p, string firstSource)
    {
        p.Order = (0, Order.GetValueOrDefault(firstSource, int.MaxValue));
        Outputs.Add(p);
    }

    /// <inheritdoc />
    public override void AddCarried(PlannedTensor p, TensorLocation source) => Add(p, source.Name);
}

/// <summary>Training layout -> HF: reads a training checkpoint; outputs are ordered by the planner (or the reference's shards).</summary>
internal sealed class HfSide : PlanSide
{
    /// <summary>Per-tensor planning (re-quantization, expert splitting).</summary>
    public required HfPlanContext Ctx { get; init; }
    /// <summary>The HF dtype and shape of every tensor (reference, else the recorded source); empty: none known.</summary>
    public required Dictionary<string, (DType DType, long[] Shape)> Hints { get; init; }

    /// <inheritdoc />
    public override ConversionDirection Direction => ConversionDirection.ToHf;

    /// <inheritdoc />
    protected override void Plan(RuleOperation op, Binding b) => op.ToHf(b, this);

    /// <inheritdoc />
    public override void AddCarried(PlannedTensor p, TensorLocation source) => Outputs.Add(p);
}
