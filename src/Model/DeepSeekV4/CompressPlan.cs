using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Mtp.Model;

// Field names in these modules ARE the parameter names (TorchSharp registers fields by name).
#pragma warning disable IDE1006

/// <summary>
/// Which tokens form each compressed entry of a compress ratio r, per batch row: entry g of a packed
/// sequence pools its tokens g*r .. g*r+r-1 (and, with overlap, the previous group's tokens); query at
/// in-sequence position p sees the entries g &lt; (p+1)/r of its own sequence.
/// </summary>
public sealed class CompressPlan : IDisposable
{
    /// <summary>Entries per row (padded).</summary>
    public long Count { get; }
    /// <summary>[B, C, r] flat token indices (into B*S) of each entry's own group (0 for padding).</summary>
    public Tensor Current { get; }
    /// <summary>[B, C, r] flat token indices of the previous group (0 where none).</summary>
    public Tensor Previous { get; }
    /// <summary>[B, C] true where the previous group exists (g ≥ 1 of a real entry).</summary>
    public Tensor PreviousValid { get; }
    /// <summary>[B, 1, S, C] true where query i may read entry c.</summary>
    public Tensor Visible { get; }

    CompressPlan(long count, Tensor cur, Tensor prev, Tensor prevValid, Tensor visible)
    {
        Count = count; Current = cur; Previous = prev; PreviousValid = prevValid; Visible = visible;
    }

    /// <summary>Builds the plan for ratio <paramref name="r"/>; null when no row has a complete group.</summary>
    public static CompressPlan? Build(long[] cu, long rows, long seqLen, int r, Device device)
    {
        var perRow = new List<(long Seg, long Start, long G, long SegStart)>[rows];
        var seg = Packing.SegmentIds(cu);
        for (int b = 0; b < rows; b++) perRow[b] = new();
        for (int s = 0; s + 1 < cu.Length; s++)
        {
            long len = cu[s + 1] - cu[s], row = cu[s] / seqLen;
            for (long g = 0; g < len / r; g++) perRow[row].Add((s, cu[s] + g * r, g, cu[s]));
        }
        long c = perRow.Max(l => (long)l.Count);
        if (c == 0) return null;
        var cur = new long[rows * c * r];
        var prev = new long[rows * c * r];
        var prevValid = new bool[rows * c];
        var visible = new bool[rows * seqLen * c];
        for (int b = 0; b < rows; b++)
        {
            for (int e = 0; e < perRow[b].Count; e++)
            {
                var (sg, start, g, _) = perRow[b][e];
                for (int t = 0; t < r; t++)
                {
                    cur[(b * c + e) * r + t] = start + t;
                    prev[(b * c + e) * r + t] = g > 0 ? start - r + t : 0;
                }
                prevValid[b * c + e] = g > 0;
            }
            for (long i = 0; i < seqLen; i++)
            {
                long flat = b * seqLen + i;
                long s = seg[flat], p = flat - cu[s];
                for (int e = 0; e < perRow[b].Count; e++)
                {
                    var en = perRow[b][e];
                    visible[(flat) * c + e] = en.Seg == s && en.G < (p + 1) / r;
                }
            }
        }
        return new CompressPlan(c,
            tensor(cur, device: device).view(rows, c, r),
            tensor(prev, device: device).view(rows, c, r),
            tensor(prevValid, device: device).view(rows, c),
            tensor(visible, device: device).view(rows, 1, seqLen, c));
    }

    /// <inheritdoc />
    public void Dispose()
    {
        Current.Dispose(); Previous.Dispose(); PreviousValid.Dispose(); Visible.Dispose();
    }
}
