using static TorchSharp.torch;

namespace Mtp.Model;

/// <summary>
/// A batch of packed sequences: <c>InputIds</c> and <c>Labels</c> [B, S] (int64) and cu_seqlens over the
/// flattened B*S tokens. Every row boundary must also be a sequence boundary. Labels are already the
/// next token (ignore index -100 where there is none, e.g. each sequence's last position).
/// </summary>
/// <param name="InputIds">[B, S] token ids.</param>
/// <param name="Labels">[B, S] next-token targets, -100 = ignored.</param>
/// <param name="CuSeqlens">Cumulative sequence starts over the flattened batch: 0, …, B*S.</param>
public sealed record PackedBatch(Tensor InputIds, Tensor Labels, long[] CuSeqlens) : IDisposable
{
    /// <summary>Disposes the two tensors.</summary>
    public void Dispose()
    {
        InputIds.Dispose();
        Labels.Dispose();
    }
}

/// <summary>Pure helpers for packed sequences: validation, positions, masks, per-sequence rolls.</summary>
public static class Packing
{
    /// <summary>The ignore index of labels.</summary>
    public const long IgnoreIndex = -100;

    /// <summary>Checks cu_seqlens against a [rows, seqLen] batch; throws with the reason.</summary>
    public static void Validate(long[] cu, long rows, long seqLen)
    {
        if (cu.Length < 2 || cu[0] != 0 || cu[^1] != rows * seqLen)
            throw new ArgumentException($"cu_seqlens must start at 0 and end at B*S = {rows * seqLen}: [{string.Join(", ", cu)}]");
        for (int i = 1; i < cu.Length; i++)
            if (cu[i] <= cu[i - 1]) throw new ArgumentException($"cu_seqlens must be strictly increasing: [{string.Join(", ", cu)}]");
        var set = new HashSet<long>(cu);
        for (long r = 1; r < rows; r++)
            if (!set.Contains(r * seqLen)) throw new ArgumentException($"row boundary {r * seqLen} is not in cu_seqlens: sequences may not span rows");
    }

    /// <summary>Sequence index of every flattened position.</summary>
    public static long[] SegmentIds(long[] cu)
    {
        var seg = new long[cu[^1]];
        for (int s = 0; s + 1 < cu.Length; s++)
            for (long p = cu[s]; p < cu[s + 1]; p++) seg[p] = s;
        return seg;
    }

    /// <summary>Position of every flattened token inside its own sequence (restarts at 0 per sequence).</summary>
    public static long[] Positions(long[] cu)
    {
        var pos = new long[cu[^1]];
        for (int s = 0; s + 1 < cu.Length; s++)
            for (long p = cu[s]; p < cu[s + 1]; p++) pos[p] = p - cu[s];
        return pos;
    }

    /// <summary>[B, 1, S, S] bool: query i may see key j iff j ≤ i and both lie in the same sequence.</summary>
    public static Tensor AttentionMask(long[] cu, long rows, long seqLen, Device device)
    {
        using var scope = NewDisposeScope();
        var seg = tensor(SegmentIds(cu), device: device).view(rows, seqLen);
        var same = seg.unsqueeze(2).eq(seg.unsqueeze(1));                         // [B,S,S]
        var causal = ones(seqLen, seqLen, dtype: ScalarType.Bool, device: device).tril();
        return same.logical_and(causal).unsqueeze(1).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// Rolls each packed sequence of <paramref name="x"/> [B, S] left by <paramref name="shift"/> on its own:
    /// position p takes x[p + shift] when that is still in p's sequence, else <paramref name="fill"/>.
    /// [1,2,3 | 4,5,6] rolled by 1 is [2,3,F | 5,6,F]. Returns a new tensor; <paramref name="x"/> is never modified.
    /// </summary>
    public static Tensor Roll(Tensor x, long[] cu, int shift, long fill)
    {
        if (shift < 0) throw new ArgumentOutOfRangeException(nameof(shift));
        long n = cu[^1];
        var src = new long[n];
        var keep = new bool[n];
        for (int s = 0; s + 1 < cu.Length; s++)
            for (long p = cu[s]; p < cu[s + 1]; p++)
            {
                keep[p] = p + shift < cu[s + 1];
                src[p] = keep[p] ? p + shift : p;
            }
        using var scope = NewDisposeScope();
        var srcT = tensor(src, device: x.device);
        var keepT = tensor(keep, device: x.device).view(x.shape);
        var gathered = x.flatten().index_select(0, srcT).view(x.shape);
        var filled = HeldScalars.FullLike(x, fill);
        return where(keepT, gathered, filled).MoveToOuterDisposeScope();
    }

    /// <summary>Labels for one packed batch of ids: next token inside each sequence, -100 at each sequence's end.</summary>
    public static Tensor NextTokenLabels(Tensor ids, long[] cu) => Roll(ids, cu, 1, IgnoreIndex);
}
