using static TorchSharp.torch;

namespace Mtp.Model;

/// <summary>Loss tensors of one forward: total (for backward), main CE and each depth's CE (scalars, F32).</summary>
/// <param name="Total">main + (lambda / D) * sum_k mtp_k.</param>
/// <param name="Main">Main next-token CE.</param>
/// <param name="Mtp">CE of each depth, in order.</param>
public sealed record LossOutput(Tensor Total, Tensor Main, IReadOnlyList<Tensor> Mtp);

/// <summary>The MTP training objective (DeepSeek-V3 report, Megatron-Core, NeMo).</summary>
public static class MtpLoss
{
    /// <summary>Mean cross-entropy over labels ≠ -100 (F32); zero when no label counts.</summary>
    public static Tensor CrossEntropy(Tensor logits, Tensor labels)
    {
        long v = logits.shape[^1];
        var flatLogits = logits.reshape(-1, v).to(ScalarType.Float32);
        var flatLabels = labels.reshape(-1);
        var valid = flatLabels.NotEqual(Packing.IgnoreIndex);
        var count = valid.sum().to(ScalarType.Float32);
        var safe = where(valid, flatLabels, zeros_like(flatLabels));
        var nll = -flatLogits.log_softmax(-1).gather(1, safe.unsqueeze(1)).squeeze(1);
        var summed = where(valid, nll, zeros_like(nll)).sum();
        return summed / count.AtLeast(1.0);
    }

    /// <summary>total = CE(main) + (lambda / D) * Σ_k CE_k; D = number of depths (no MTP term when D = 0).</summary>
    public static LossOutput Compute(Tensor mainLogits, Tensor labels, IReadOnlyList<Tensor> mtpLogits, IReadOnlyList<Tensor> mtpLabels, double lambda)
    {
        var main = CrossEntropy(mainLogits, labels);
        var depth = new List<Tensor>();
        for (int k = 0; k < mtpLogits.Count; k++) depth.Add(CrossEntropy(mtpLogits[k], mtpLabels[k]));
        var total = main;
        if (depth.Count > 0) total = main.Plus(stack(depth).sum().Times(lambda / depth.Count));
        return new LossOutput(total, main, depth);
    }
}
