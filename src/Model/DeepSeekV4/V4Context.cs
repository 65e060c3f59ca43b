using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Mtp.Model;

// Field names in these modules ARE the parameter names (TorchSharp registers fields by name).
#pragma warning disable IDE1006

/// <summary>
/// Per-forward inputs of every V4 layer: positions, the sliding-window mask, both rope tables and
/// (lazily) the compression plans. Owns its tensors.
/// </summary>
public sealed class V4Context : IDisposable
{
    readonly Dictionary<int, (CompressPlan? Plan, Tensor? Cos, Tensor? Sin)> _plans = new();
    readonly DeepSeekV4Config _c;
    readonly double[] _invCompress;

    /// <summary>Builds the context for a packed batch [rows, seqLen] with in-sequence positions [rows, seqLen].</summary>
    public V4Context(DeepSeekV4Config c, long[] cu, long rows, long seqLen, Tensor positions, Device device)
    {
        _c = c;
        Cu = cu; Rows = rows; SeqLen = seqLen; Device = device;
        Positions = positions;
        using (var scope = NewDisposeScope())
        {
            var mask = Packing.AttentionMask(cu, rows, seqLen, device);
            var idx = HeldScalars.Arange(seqLen, device);
            var inWindow = (idx.unsqueeze(1) - idx.unsqueeze(0)).LessThan(c.SlidingWindow);     // i - j < window
            WindowMask = mask.logical_and(inWindow).MoveToOuterDisposeScope();
        }
        var invBase = V4Rope.InverseFrequencies(c.QkRopeHeadDim, c.RopeTheta, null);
        _invCompress = V4Rope.InverseFrequencies(c.QkRopeHeadDim, c.CompressRopeTheta, c.Yarn);
        (CosBase, SinBase) = V4Rope.CosSin(invBase, positions);
        (CosCompress, SinCompress) = V4Rope.CosSin(_invCompress, positions);
    }

    /// <summary>cu_seqlens.</summary>
    public long[] Cu { get; }
    /// <summary>Rows B.</summary>
    public long Rows { get; }
    /// <summary>Tokens per row S.</summary>
    public long SeqLen { get; }
    /// <summary>Device.</summary>
    public Device Device { get; }
    /// <summary>[B, S] in-sequence positions.</summary>
    public Tensor Positions { get; }
    /// <summary>[B, 1, S, S]: same sequence, causal, and i - j &lt; sliding_window.</summary>
    public Tensor WindowMask { get; }
    /// <summary>[B, S, rd/2] rope of pure sliding-window layers.</summary>
    public Tensor CosBase { get; }
    /// <summary>[B, S, rd/2].</summary>
    public Tensor SinBase { get; }
    /// <summary>[B, S, rd/2] rope of compressed layers.</summary>
    public Tensor CosCompress { get; }
    /// <summary>[B, S, rd/2].</summary>
    public Tensor SinCompress { get; }

    /// <summary>The plan of ratio <paramref name="r"/> and the rope of its entries (position of each group's first token); null plan when empty.</summary>
    public (CompressPlan? Plan, Tensor? Cos, Tensor? Sin) Plan(int r)
    {
        if (_plans.TryGetValue(r, out var p)) return p;
        // The context owns what it caches (Dispose frees it): detached from the caller's dispose scope, a plan first
        // asked for inside a shorter scope (the frozen main pass, see MtpModel.MainPass) outlives it for the depths.
        var plan = CompressPlan.Build(Cu, Rows, SeqLen, r, Device);
        Tensor? cos = null, sin = null;
        if (plan is not null)
        {
            foreach (var t in new[] { plan.Current, plan.Previous, plan.PreviousValid, plan.Visible }) t.DetachFromDisposeScope();
            using var scope = NewDisposeScope();
            var first = plan.Current.select(-1, 0);                                  // [B, C]
            var pos = Positions.flatten().index_select(0, first.flatten()).view(first.shape);
            var (cc, ss) = V4Rope.CosSin(_invCompress, pos);
            cos = cc.DetachFromDisposeScope();
            sin = ss.DetachFromDisposeScope();
        }
        p = (plan, cos, sin);
        _plans[r] = p;
        return p;
    }

    /// <inheritdoc />
    public void Dispose()
    {
        WindowMask.Dispose(); CosBase.Dispose(); SinBase.Dispose(); CosCompress.Dispose(); SinCompress.Dispose();
        foreach (var (plan, cos, sin) in _plans.Values) { plan?.Dispose(); cos?.Dispose(); sin?.Dispose(); }
    }
}
