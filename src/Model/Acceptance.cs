using static TorchSharp.torch;

namespace Mtp.Model;

/// <summary>
/// Top-1 acceptance counts of D MTP depths over a set of positions, additive across batches (<see cref="Add"/>).
/// Depth k (1-based) at position p predicts the token k+1 ahead of p; its label is <c>mtpLabels[k-1][p]</c>
/// (<see cref="Packing.IgnoreIndex"/> where that token lies outside p's packed sequence). With
/// <c>pred_k(p) = argmax_v logits_k[p, v]</c>, <c>has_k(p) = label_k(p) ≠ -100</c> and
/// <c>acc_k(p) = has_k(p) ∧ pred_k(p) = label_k(p)</c>:
/// <list type="bullet">
/// <item><see cref="Labeled"/>[k-1] = #{p : has_k}; <see cref="Accepted"/>[k-1] = #{p : acc_k} (unconditioned);</item>
/// <item><see cref="ChainBase"/>[k-1] = #{p : acc_1 ∧ … ∧ acc_{k-1} ∧ has_k} (depth k is tried: every earlier draft was accepted);</item>
/// <item><see cref="ChainAccepted"/>[k-1] = #{p : acc_1 ∧ … ∧ acc_k};</item>
/// <item><see cref="FullyLabeled"/> = #{p : has_1 ∧ … ∧ has_D}; <see cref="FullPrefixAccepted"/>[k-1] = #{p : has_1 ∧ … ∧ has_D ∧ acc_1 ∧ … ∧ acc_k}.</item>
/// </list>
/// </summary>
public sealed class AcceptanceCounts
{
    /// <summary>Zero counts for <paramref name="depths"/> depths.</summary>
    public AcceptanceCounts(int depths)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(depths);
        Labeled = new long[depths];
        Accepted = new long[depths];
        ChainBase = new long[depths];
        ChainAccepted = new long[depths];
        FullPrefixAccepted = new long[depths];
    }

    /// <summary>Number of depths D.</summary>
    public int Depths => Labeled.Length;
    /// <summary>Per depth: positions with a label.</summary>
    public long[] Labeled { get; }
    /// <summary>Per depth: positions whose top-1 prediction equals the label.</summary>
    public long[] Accepted { get; }
    /// <summary>Per depth k: positions where depths 1..k-1 were accepted and depth k has a label.</summary>
    public long[] ChainBase { get; }
    /// <summary>Per depth k: positions where depths 1..k were all accepted.</summary>
    public long[] ChainAccepted { get; }
    /// <summary>Positions where every depth has a label (the population of <see cref="ExpectedAcceptedLength"/>).</summary>
    public long FullyLabeled { get; private set; }
    /// <summary>Per depth k: positions of <see cref="FullyLabeled"/> where depths 1..k were all accepted.</summary>
    public long[] FullPrefixAccepted { get; }

    /// <summary>Unconditioned acceptance of depth <paramref name="k"/> (1-based): Accepted / Labeled; null when no position has a label.</summary>
    public double? Acceptance(int k) => Ratio(Accepted[k - 1], Labeled[k - 1]);

    /// <summary>
    /// Conditioned (chained speculative decoding) acceptance of depth <paramref name="k"/> (1-based):
    /// ChainAccepted / ChainBase, the chance that depth k's draft is accepted given that depths 1..k-1 were; null when
    /// depth k was never tried. Depth 1's equals its unconditioned acceptance.
    /// </summary>
    public double? Conditioned(int k) => Ratio(ChainAccepted[k - 1], ChainBase[k - 1]);

    /// <summary>
    /// Tokens one decoding step yields on average: 1 (the main model's own token) + Σ_k P(depths 1..k all accepted),
    /// the probabilities taken over the positions where every depth has a label (so each position can yield 1..D+1
    /// tokens). 1 when D = 0; null when D &gt; 0 and no position has every label (sequences shorter than D+2 tokens).
    /// </summary>
    public double? ExpectedAcceptedLength
    {
        get
        {
            if (Depths == 0) return 1.0;
            if (FullyLabeled == 0) return null;
            return 1.0 + FullPrefixAccepted.Sum(c => (double)c / FullyLabeled);
        }
    }

    static double? Ratio(long num, long den) => den == 0 ? null : (double)num / den;

    /// <summary>Adds <paramref name="other"/>'s counts (same number of depths) to these.</summary>
    public void Add(AcceptanceCounts other)
    {
        if (other.Depths != Depths) throw new ArgumentException($"counts of {other.Depths} depths cannot be added to counts of {Depths}");
        for (int i = 0; i < Depths; i++)
        {
            Labeled[i] += other.Labeled[i];
            Accepted[i] += other.Accepted[i];
            ChainBase[i] += other.ChainBase[i];
            ChainAccepted[i] += other.ChainAccepted[i];
            FullPrefixAccepted[i] += other.FullPrefixAccepted[i];
        }
        FullyLabeled += other.FullyLabeled;
    }

    /// <summary>
    /// Counts one batch: <paramref name="mtpLogits"/>[k-1] is depth k's [..., V] logits and <paramref name="mtpLabels"/>[k-1]
    /// its labels of the same leading shape (as in <see cref="ModelOutput"/>). A pure function of the tensors: nothing is
    /// kept, every temporary is disposed. Ties in the logits go to the lowest id (torch's argmax).
    /// </summary>
    public static AcceptanceCounts Count(IReadOnlyList<Tensor> mtpLogits, IReadOnlyList<Tensor> mtpLabels)
    {
        if (mtpLogits.Count != mtpLabels.Count)
            throw new ArgumentException($"{mtpLogits.Count} depths of logits but {mtpLabels.Count} of labels");
        int d = mtpLogits.Count;
        var c = new AcceptanceCounts(d);
        if (d == 0) return c;
        using var scope = NewDisposeScope();
        var has = new Tensor[d];
        var acc = new Tensor[d];
        for (int k = 0; k < d; k++)
        {
            var labels = mtpLabels[k].to(ScalarType.Int64);
            if (!mtpLogits[k].shape[..^1].SequenceEqual(labels.shape))
                throw new ArgumentException($"depth {k + 1}: logits [{string.Join(", ", mtpLogits[k].shape)}] do not match labels [{string.Join(", ", labels.shape)}]");
            has[k] = labels.NotEqual(Packing.IgnoreIndex);
            acc[k] = has[k].logical_and(mtpLogits[k].argmax(-1).to(labels.device).eq(labels));
        }
        var full = has[0];
        for (int k = 1; k < d; k++) full = full.logical_and(has[k]);
        c.FullyLabeled = Sum(full);
        var prefix = ones_like(has[0]); // acc_1 ∧ … ∧ acc_{k-1}, true for k = 1
        for (int k = 0; k < d; k++)
        {
            c.Labeled[k] = Sum(has[k]);
            c.Accepted[k] = Sum(acc[k]);
            c.ChainBase[k] = Sum(prefix.logical_and(has[k]));
            prefix = prefix.logical_and(acc[k]);
            c.ChainAccepted[k] = Sum(prefix);
            c.FullPrefixAccepted[k] = Sum(prefix.logical_and(full));
        }
        return c;
    }

    static long Sum(Tensor mask) => mask.sum().item<long>();
}
