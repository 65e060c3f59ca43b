using static TorchSharp.torch;

namespace Mtp.Model.Tests;

/// <summary>
/// <see cref="AcceptanceCounts.Count"/> on hand-made logits and labels: each expected count below was worked out by hand
/// from the predictions and labels written next to it.
/// </summary>
public class AcceptanceCountTests
{
    const long X = Packing.IgnoreIndex;
    const int V = 8;

    // Logits [rows, S, V] whose argmax at (r, p) is preds[r][p]: 1 there, 0 elsewhere, plus a distractor of 0.5.
    static Tensor Logits(params long[][] preds)
    {
        int rows = preds.Length, s = preds[0].Length;
        var v = new float[rows * s * V];
        for (int r = 0; r < rows; r++)
            for (int p = 0; p < s; p++)
            {
                int at = (r * s + p) * V;
                v[at + (int)((preds[r][p] + 1) % V)] = 0.5f;
                v[at + (int)preds[r][p]] = 1f;
            }
        return tensor(v).view(rows, s, V);
    }

    static Tensor Labels(params long[][] rows) => tensor(rows.SelectMany(r => r).ToArray()).view(rows.Length, rows[0].Length);

    // The README's worked example: depth 2 is right only where depth 1 was wrong.
    //   p        0  1  2  3  4   5
    //   label1   1  2  3  0  1   -
    //   pred1    1  0  3  1  1   2     accepted at 0, 2, 4
    //   label2   2  3  0  1  -   -
    //   pred2    0  3  1  1  0   0     accepted at 1, 3
    static (Tensor[] Logits, Tensor[] Labels) WorkedExample() => (
        [Logits([1, 0, 3, 1, 1, 2]), Logits([0, 3, 1, 1, 0, 0])],
        [Labels([1, 2, 3, 0, 1, X]), Labels([2, 3, 0, 1, X, X])]);

    [Test]
    public void DepthTwoRightOnlyWhereDepthOneWasWrongIsNeverAcceptedInTheChain()
    {
        var (logits, labels) = WorkedExample();
        var c = AcceptanceCounts.Count(logits, labels);
        Assert.That(c.Labeled, Is.EqualTo(new long[] { 5, 4 }));
        Assert.That(c.Accepted, Is.EqualTo(new long[] { 3, 2 }));
        Assert.That(c.Acceptance(1), Is.EqualTo(3.0 / 5));
        Assert.That(c.Acceptance(2), Is.EqualTo(2.0 / 4));
        // Depth 2 is tried where depth 1 was accepted and depth 2 has a label: positions 0 and 2 (4 has no depth-2 label).
        Assert.That(c.ChainBase, Is.EqualTo(new long[] { 5, 2 }));
        Assert.That(c.ChainAccepted, Is.EqualTo(new long[] { 3, 0 }));
        Assert.That(c.Conditioned(1), Is.EqualTo(c.Acceptance(1)));
        Assert.That(c.Conditioned(2), Is.EqualTo(0.0));
        // Positions 0..3 have both labels; leading accepted drafts 1, 0, 1, 0: 1 + 2/4.
        Assert.That(c.FullyLabeled, Is.EqualTo(4));
        Assert.That(c.FullPrefixAccepted, Is.EqualTo(new long[] { 2, 0 }));
        Assert.That(c.ExpectedAcceptedLength, Is.EqualTo(1.5));
    }

    [Test]
    public void AChainAcceptedToTheEndOverTwoRowsWithAHoleInTheLabels()
    {
        // Row 0 label1 has a -100 at position 1 where label2 exists: depth 2 is counted unconditioned there but not
        // tried in the chain, and position 1 is not in the expected-length population.
        //   row 0:  label1  5  -  7  1    pred1  5  0  7  2     acc1: 0, 2
        //           label2  6  4  3  -    pred2  6  4  0  6     acc2: 0, 1
        //           label3  2  0  -  -    pred3  2  0  1  1     acc3: 0, 1
        //   row 1:  label1  3  3  3  3    pred1  3  3  0  3     acc1: 0, 1, 3
        //           label2  1  1  1  -    pred2  1  0  1  1     acc2: 0, 2
        //           label3  0  0  -  -    pred3  0  0  0  0     acc3: 0, 1
        var logits = new[]
        {
            Logits([5, 0, 7, 2], [3, 3, 0, 3]), Logits([6, 4, 0, 6], [1, 0, 1, 1]), Logits([2, 0, 1, 1], [0, 0, 0, 0]),
        };
        var labels = new[]
        {
            Labels([5, X, 7, 1], [3, 3, 3, 3]), Labels([6, 4, 3, X], [1, 1, 1, X]), Labels([2, 0, X, X], [0, 0, X, X]),
        };
        var c = AcceptanceCounts.Count(logits, labels);
        Assert.That(c.Labeled, Is.EqualTo(new long[] { 7, 6, 4 }));
        Assert.That(c.Accepted, Is.EqualTo(new long[] { 5, 4, 4 }));
        // depth 2 tried at acc1 ∧ has2: row 0 p0, p2; row 1 p0, p1 -> 4; accepted 1..2: row 0 p0, row 1 p0 -> 2.
        // depth 3 tried at acc1 ∧ acc2 ∧ has3: row 0 p0, row 1 p0 -> 2; accepted 1..3: both -> 2.
        Assert.That(c.ChainBase, Is.EqualTo(new long[] { 7, 4, 2 }));
        Assert.That(c.ChainAccepted, Is.EqualTo(new long[] { 5, 2, 2 }));
        Assert.That(c.Conditioned(2), Is.EqualTo(0.5));
        Assert.That(c.Conditioned(3), Is.EqualTo(1.0));
        // every label at row 0 p0, row 1 p0 and p1, with 3, 3 and 1 leading accepted drafts -> 1 + (3 + 3 + 1) / 3.
        Assert.That(c.FullyLabeled, Is.EqualTo(3));
        Assert.That(c.FullPrefixAccepted, Is.EqualTo(new long[] { 3, 2, 2 }));
        Assert.That(c.ExpectedAcceptedLength, Is.EqualTo(1 + 7.0 / 3).Within(1e-15));
    }

    [Test]
    public void CountsOfTwoBatchesAddUpToTheCountsOfBothTogether()
    {
        var (logits, labels) = WorkedExample();
        // The second batch predicts every label (0 where there is none): every count is its population.
        var perfect = labels.Select(l => Logits(Rows(where(l.NotEqual(X).logical_not(), zeros_like(l), l)))).ToArray();
        var a = AcceptanceCounts.Count(logits, labels);
        a.Add(AcceptanceCounts.Count(perfect, labels));
        Assert.That(a.Labeled, Is.EqualTo(new long[] { 5 + 5, 4 + 4 }));
        Assert.That(a.Accepted, Is.EqualTo(new long[] { 3 + 5, 2 + 4 }));
        Assert.That(a.ChainBase, Is.EqualTo(new long[] { 5 + 5, 2 + 4 }));
        Assert.That(a.ChainAccepted, Is.EqualTo(new long[] { 3 + 5, 0 + 4 }));
        Assert.That(a.FullyLabeled, Is.EqualTo(4 + 4));
        Assert.That(a.FullPrefixAccepted, Is.EqualTo(new long[] { 2 + 4, 0 + 4 }));
        Assert.That(a.ExpectedAcceptedLength, Is.EqualTo(1 + (6 + 4) / 8.0));
        var both = AcceptanceCounts.Count([cat([logits[0], perfect[0]]), cat([logits[1], perfect[1]])], [cat([labels[0], labels[0]]), cat([labels[1], labels[1]])]);
        Assert.That(both.Labeled, Is.EqualTo(a.Labeled));
        Assert.That(both.Accepted, Is.EqualTo(a.Accepted));
        Assert.That(both.ChainBase, Is.EqualTo(a.ChainBase));
        Assert.That(both.ChainAccepted, Is.EqualTo(a.ChainAccepted));
        Assert.That(both.FullPrefixAccepted, Is.EqualTo(a.FullPrefixAccepted));
        Assert.That(both.FullyLabeled, Is.EqualTo(a.FullyLabeled));
    }

    static long[][] Rows(Tensor t) => Enumerable.Range(0, (int)t.shape[0]).Select(r => t[r].data<long>().ToArray()).ToArray();

    [Test]
    public void NoLabelsGiveNoRatesAndNoDepthsGiveLengthOne()
    {
        var c = AcceptanceCounts.Count([Logits([1, 2])], [Labels([X, X])]);
        Assert.That(c.Acceptance(1), Is.Null);
        Assert.That(c.Conditioned(1), Is.Null);
        Assert.That(c.ExpectedAcceptedLength, Is.Null);
        Assert.That(AcceptanceCounts.Count([], []).ExpectedAcceptedLength, Is.EqualTo(1.0));
    }

    [Test]
    public void MismatchedShapesAreRefused()
    {
        var e = Assert.Throws<ArgumentException>(() => AcceptanceCounts.Count([Logits([1, 2, 3])], [Labels([1, 2])]));
        Assert.That(e!.Message, Does.Contain("depth 1"));
        Assert.Throws<ArgumentException>(() => AcceptanceCounts.Count([Logits([1, 2])], []));
    }
}
