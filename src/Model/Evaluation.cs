using static TorchSharp.torch;

namespace Mtp.Model;

/// <summary>What to evaluate: <see cref="Batches"/> batches of <see cref="Batch"/> rows of <see cref="SeqLen"/> tokens.</summary>
public sealed record EvalOptions
{
    /// <summary>Batches drawn from the token source.</summary>
    public int Batches { get; init; } = 8;
    /// <summary>Rows per batch.</summary>
    public int Batch { get; init; } = 2;
    /// <summary>Tokens per row.</summary>
    public int SeqLen { get; init; } = 64;
}

/// <summary>One MTP depth's figures over the whole evaluation.</summary>
/// <param name="Depth">1-based depth k: predicts the token k+1 ahead.</param>
/// <param name="Loss">Mean cross-entropy over every labelled position of every batch (token-weighted).</param>
/// <param name="Labels">Positions with a label for this depth.</param>
/// <param name="Accepted">Positions whose top-1 prediction is the label.</param>
/// <param name="Acceptance">Accepted / Labels (null when no label).</param>
/// <param name="ChainBase">Positions where depths 1..k-1 were accepted and this depth has a label.</param>
/// <param name="ChainAccepted">Positions where depths 1..k were all accepted.</param>
/// <param name="Conditioned">ChainAccepted / ChainBase (null when the depth was never tried).</param>
public sealed record DepthEval(int Depth, double Loss, long Labels, long Accepted, double? Acceptance, long ChainBase, long ChainAccepted, double? Conditioned);

/// <summary>The result of <see cref="Evaluator.Run"/>.</summary>
/// <param name="MainLoss">Main next-token cross-entropy, token-weighted over every batch.</param>
/// <param name="MainLabels">Positions with a next-token label.</param>
/// <param name="Tokens">Positions evaluated (batches × rows × seq-len).</param>
/// <param name="Depths">Each MTP depth, in order.</param>
/// <param name="Counts">The raw acceptance counts behind <see cref="Depths"/> and <see cref="ExpectedAcceptedLength"/>.</param>
public sealed record EvalResult(double MainLoss, long MainLabels, long Tokens, IReadOnlyList<DepthEval> Depths, AcceptanceCounts Counts)
{
    /// <summary>exp(<see cref="MainLoss"/>).</summary>
    public double Perplexity => Math.Exp(MainLoss);
    /// <summary>See <see cref="AcceptanceCounts.ExpectedAcceptedLength"/>.</summary>
    public double? ExpectedAcceptedLength => Counts.ExpectedAcceptedLength;
}

/// <summary>
/// Evaluates a model on a token source: forwards in eval mode under no_grad, main and per-depth losses weighted by
/// label count across batches (sum of the batches' summed cross-entropies / their label count, not a mean of means),
/// and the top-1 acceptance of each depth (<see cref="AcceptanceCounts"/>). Deterministic for a given model, source
/// state and device (no sampling; ties in the logits go to the lowest id).
/// </summary>
public static class Evaluator
{
    /// <summary>Draws <see cref="EvalOptions.Batches"/> batches from <paramref name="data"/> and evaluates <paramref name="model"/> on them.</summary>
    public static EvalResult Run(MtpModel model, TokenSource data, EvalOptions options)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(options.Batches, 1);
        int d = model.MtpDepthCount;
        double mainSum = 0;
        long mainCount = 0, tokens = 0;
        var depthSum = new double[d];
        var counts = new AcceptanceCounts(d);
        bool wasTraining = model.training;
        model.eval();
        try
        {
            using var noGrad = no_grad();
            for (int i = 0; i < options.Batches; i++)
            {
                using var scope = NewDisposeScope();
                using var batch = data.Next(options.Batch, options.SeqLen);
                var o = model.Forward(batch);
                var labels = batch.Labels.to(ScalarType.Int64, model.Device);
                (double s, long n) = Summed(o.MainLogits, labels);
                mainSum += s;
                mainCount += n;
                for (int k = 0; k < d; k++) depthSum[k] += Summed(o.MtpLogits[k], o.MtpLabels[k]).Sum;
                counts.Add(AcceptanceCounts.Count(o.MtpLogits, o.MtpLabels));
                tokens += batch.InputIds.numel();
            }
        }
        finally { model.train(wasTraining); }
        var depths = Enumerable.Range(1, d).Select(k => new DepthEval(k,
            depthSum[k - 1] / Math.Max(1, counts.Labeled[k - 1]), counts.Labeled[k - 1], counts.Accepted[k - 1], counts.Acceptance(k),
            counts.ChainBase[k - 1], counts.ChainAccepted[k - 1], counts.Conditioned(k))).ToList();
        return new EvalResult(mainSum / Math.Max(1, mainCount), mainCount, tokens, depths, counts);
    }

    // Summed cross-entropy of one batch and its label count: MtpLoss's mean times the count it divided by.
    static (double Sum, long Count) Summed(Tensor logits, Tensor labels)
    {
        long n = labels.NotEqual(Packing.IgnoreIndex).sum().item<long>();
        return ((double)MtpLoss.CrossEntropy(logits, labels).item<float>() * n, n);
    }
}
