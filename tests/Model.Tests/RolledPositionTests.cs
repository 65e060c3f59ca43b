using TorchSharp;
using static TorchSharp.torch;

namespace Mtp.Model.Tests;

/// <summary>
/// Why the models have no option to roll position ids with the ids of an MTP depth (Megatron/NeMo do): every family's
/// attention applies RoPE, which sees only the difference of two positions, and rolling by k shifts every position
/// that a label reads by the same k (only each sequence's last k positions, whose labels are ignored and which no
/// earlier query sees, would become 0). Here each family's depth 1 runs on the same inputs at rolled and at original
/// positions: its logits agree at every labelled position (to rounding: cos/sin of other angles) and so does its loss;
/// the tail positions do change, which shows the rolled positions reached the depth's attention.
/// </summary>
public class RolledPositionTests
{
    static readonly long[] Cu = { 0, 23, 41, 64 };
    const int Rows = 1, SeqLen = 64;

    static PackedBatch Batch(int vocab) => TestUtil.RandomBatch(Rows, SeqLen, Cu, vocab, 21);

    static Tensor Positions => tensor(Packing.Positions(Cu)).view(Rows, SeqLen);

    /// <summary>Compares depth-1 logits at original vs rolled positions on the labelled and on the tail positions.</summary>
    static void AssertOnlyTheUnlabelledTailMoves(Tensor atOriginal, Tensor atRolled, Tensor labels, string family)
    {
        var labelled = labels.NotEqual(Packing.IgnoreIndex).unsqueeze(-1);
        double scale = Math.Max(1, atOriginal.abs().max().item<float>());
        double onLabels = atOriginal.sub(atRolled).abs().FillWhere(labelled.logical_not(), 0).max().item<float>();
        double onTail = atOriginal.sub(atRolled).abs().FillWhere(labelled, 0).max().item<float>();
        var lossOriginal = MtpLoss.CrossEntropy(atOriginal, labels).item<float>();
        var lossRolled = MtpLoss.CrossEntropy(atRolled, labels).item<float>();
        TestContext.Out.WriteLine($"{family}: labelled max diff {onLabels:G3}, tail max diff {onTail:G3}, loss {lossOriginal:R} vs {lossRolled:R}");
        Assert.That(onLabels, Is.LessThanOrEqualTo(1e-5 * scale), $"{family}: depth-1 logits at labelled positions");
        Assert.That(lossRolled, Is.EqualTo(lossOriginal).Within(1e-6 * Math.Abs(lossOriginal)), $"{family}: depth-1 loss");
        Assert.That(onTail, Is.GreaterThan(1e-5 * scale), $"{family}: control, the tail (position 0 when rolled) must move");
    }

    [Test]
    public void DeepSeekV3DepthIgnoresRolledPositions()
    {
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        using var m = DeepSeekV3Model.Load(TestUtil.Tiny(1), CPU, ScalarType.Float32);
        using var batch = Batch(m.VocabSize);
        var ctx = m.Context(Cu, Rows, SeqLen);
        var rolledCtx = m.Context(Cu, Rows, SeqLen, Packing.Roll(Positions, Cu, 1, 0));
        var h = m.Body.Norm.forward(m.Body.Hidden(batch.InputIds, ctx)); // what the model hands depth 1 (src/Model/README.md)
        var ids = Packing.Roll(batch.InputIds, Cu, 1, 0);
        var a = m.MtpDepths[0].Forward(ids, h, ctx, m.Body.EmbedTokens, m.LmHead).Logits;
        var b = m.MtpDepths[0].Forward(ids, h, rolledCtx, m.Body.EmbedTokens, m.LmHead).Logits;
        AssertOnlyTheUnlabelledTailMoves(a, b, Packing.Roll(batch.Labels, Cu, 1, Packing.IgnoreIndex), m.Family);
    }

    [Test]
    public void DeepSeekV4DepthIgnoresRolledPositions()
    {
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        using var m = DeepSeekV4Model.Load(DeepSeekV4Util.Native(), CPU, ScalarType.Float32);
        using var batch = Batch(m.VocabSize);
        using var ctx = m.Context(Cu, Rows, SeqLen);
        using var rolledCtx = m.Context(Cu, Rows, SeqLen, Packing.Roll(Positions, Cu, 1, 0));
        var streams = m.Body.Streams(batch.InputIds, ctx, m.Config.HcMult);
        var ids = Packing.Roll(batch.InputIds, Cu, 1, 0);
        var a = m.MtpDepths[0].Forward(ids, streams, ctx, m.Body.EmbedTokens, m.LmHead, m.Body.HcHead).Logits;
        var b = m.MtpDepths[0].Forward(ids, streams, rolledCtx, m.Body.EmbedTokens, m.LmHead, m.Body.HcHead).Logits;
        AssertOnlyTheUnlabelledTailMoves(a, b, Packing.Roll(batch.Labels, Cu, 1, Packing.IgnoreIndex), m.Family);
    }

    [Test]
    public void QwenDepthIgnoresRolledPositions()
    {
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        foreach (var m in new[] { QwenTestUtil.Load("qwen3.5-moe"), QwenNextTests.RandomModel(seed: 8) })
            using (m)
            {
                using var batch = Batch(m.VocabSize);
                var ctx = m.Context(Cu, Rows, SeqLen);
                var rolledCtx = m.Context(Cu, Rows, SeqLen, Packing.Roll(Positions, Cu, 1, 0));
                var h = m.Body.Norm.forward(m.Body.Hidden(batch.InputIds, ctx));
                var emb = m.Body.EmbedTokens.forward(Packing.Roll(batch.InputIds, Cu, 1, 0));
                var depth = m.MtpLayers[0];
                var a = m.Head(depth.Depth(emb, h, ctx, depth));
                var b = m.Head(depth.Depth(emb, h, rolledCtx, depth));
                AssertOnlyTheUnlabelledTailMoves(a, b, Packing.Roll(batch.Labels, Cu, 1, Packing.IgnoreIndex), m.Family);
            }
    }
}
