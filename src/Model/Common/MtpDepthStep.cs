using static TorchSharp.torch;

namespace Mtp.Model;

/// <summary>
/// One MTP depth's parts, in the order <see cref="MtpDepthStep.Run"/> runs them. The family decides what each part is: its
/// own or the shared embedding and head, how the embedding and the previous state are fused, the block, the final norm,
/// and which state the next depth reads.
/// </summary>
/// <typeparam name="TContext">The family's per-forward context (masks, rope tables, ...).</typeparam>
public interface IMtpDepth<in TContext>
{
    /// <summary>Embeds the ids rolled for this depth.</summary>
    Tensor Embed(Tensor rolledIds);

    /// <summary>Fuses the embedding with the previous state (enorm / hnorm / eh_proj or the family's equivalent).</summary>
    Tensor Fuse(Tensor embedded, Tensor previous);

    /// <summary>The depth's decoder block; the rolled ids are passed for blocks that route by token (V4's hash layers).</summary>
    Tensor Block(Tensor fused, Tensor rolledIds, TContext ctx);

    /// <summary>The final norm before the head (V4 collapses its streams first).</summary>
    Tensor FinalNorm(Tensor blockOutput);

    /// <summary>The output head: the depth's own copy or the shared one.</summary>
    Tensor Head(Tensor normed);

    /// <summary>Whether the next depth reads the normed state (Qwen) rather than the block output (DeepSeek).</summary>
    bool CarriesNormed { get; }
}

/// <summary>The step of one MTP depth, written once for every family.</summary>
public static class MtpDepthStep
{
    /// <summary>
    /// h_k = Block(Fuse(Embed(ids rolled by k), h_{k-1})), logits_k = Head(FinalNorm(h_k)); returns the state the next
    /// depth reads (h_k, or FinalNorm(h_k) where <see cref="IMtpDepth{TContext}.CarriesNormed"/>) and logits_k.
    /// </summary>
    public static (Tensor Next, Tensor Logits) Run<TContext>(IMtpDepth<TContext> depth, Tensor rolledIds, Tensor previous, TContext ctx)
    {
        var fused = depth.Fuse(depth.Embed(rolledIds), previous);
        var block = depth.Block(fused, rolledIds, ctx);
        var normed = depth.FinalNorm(block);
        var logits = depth.Head(normed);
        return (depth.CarriesNormed ? normed : block, logits);
    }
}
