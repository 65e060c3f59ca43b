using Mtp.Model.Qwen;
using Mtp.Tests.Shared;
using TorchSharp;
using static TorchSharp.torch;

namespace Mtp.Model.Tests;

/// <summary>
/// Which main hidden state the first MTP depth reads, per family (issue 17 item 1; sources in src/Model/README.md):
/// DeepSeek-V3 and Qwen the state after the final norm (what the main logits come from), DeepSeek-V4 the hyper-connection
/// streams before hc_head. Each test rebuilds the depth-1 logits from the public parts and checks the forward gives
/// exactly those, and that the other choice gives clearly different logits (so the test tells the two apart). The
/// fixtures' norm weights are 1 + 0.1 N(0, 1): with unit weights a norm before hnorm would cancel out.
/// </summary>
public class MtpInputSourceTests
{
    static readonly long[] Cu = { 0, 9, 16 };
    const int S = 16;

    static PackedBatch Batch(int vocab) => TestUtil.RandomBatch(1, S, Cu, vocab, seed: 21);

    static double MaxDiff(Tensor a, Tensor b) => a.sub(b).abs().max().item<float>();

    [Test]
    public void DeepSeekV3FirstDepthReadsTheHiddenStateAfterTheFinalNorm()
    {
        using var model = (DeepSeekV3Model)MtpModel.Load(Path.Combine(RepoPaths.Fixtures, "deepseek-v3"), CPU, ScalarType.Float32);
        using var scope = NewDisposeScope();
        using var batch = Batch(model.VocabSize);
        using var _ = no_grad();
        var output = model.Forward(batch);

        var ids = batch.InputIds.to(ScalarType.Int64);
        var ctx = model.Context(Cu, 1, S);
        var hidden = model.Body.Hidden(ids, ctx);
        var normed = model.Body.Norm.forward(hidden);
        var rolled = Packing.Roll(ids, Cu, 1, 0);
        var depth = model.MtpDepths[0];
        var expected = depth.Forward(rolled, normed, ctx, model.Body.EmbedTokens, model.LmHead).Logits;
        var fromUnnormed = depth.Forward(rolled, hidden, ctx, model.Body.EmbedTokens, model.LmHead).Logits;

        Assert.That(MaxDiff(output.MainLogits, model.LmHead.forward(normed)), Is.LessThan(1e-5), "the main logits come from the normed state");
        Assert.That(MaxDiff(output.MtpLogits[0], expected), Is.LessThan(1e-5), "depth 1 reads model.norm's output");
        Assert.That(MaxDiff(fromUnnormed, expected), Is.GreaterThan(1e-3), "reading the state before the norm would give other logits");
    }

    [Test]
    public void QwenFirstDepthReadsTheHiddenStateAfterTheFinalNorm()
    {
        using var model = QwenTestUtil.Load("qwen3.5-moe");
        using var scope = NewDisposeScope();
        using var batch = Batch(model.VocabSize);
        using var _ = no_grad();
        var output = model.Forward(batch);

        var ids = batch.InputIds.to(ScalarType.Int64);
        var ctx = model.Context(Cu, 1, S);
        var hidden = model.Body.Hidden(ids, ctx);
        var normed = model.Body.Norm.forward(hidden);
        var emb = model.Body.EmbedTokens.forward(Packing.Roll(ids, Cu, 1, 0));
        var layer = model.MtpLayers[0];
        var expected = model.Head(layer.Depth(emb, normed, ctx, layer));
        var fromUnnormed = model.Head(layer.Depth(emb, hidden, ctx, layer));

        Assert.That(MaxDiff(output.MtpLogits[0], expected), Is.LessThan(1e-5), "depth 1 reads model.norm's output");
        Assert.That(MaxDiff(fromUnnormed, expected), Is.GreaterThan(1e-3), "reading the state before the norm would give other logits");
    }

    [Test]
    public void DeepSeekV4FirstDepthReadsTheStreamsBeforeHcHead()
    {
        using var model = DeepSeekV4Model.Load(DeepSeekV4Util.Native(), CPU, ScalarType.Float32);
        using var scope = NewDisposeScope();
        using var batch = Batch(model.VocabSize);
        using var _ = no_grad();
        var output = model.Forward(batch);

        var ids = batch.InputIds.to(ScalarType.Int64);
        using var ctx = model.Context(Cu, 1, S);
        var streams = model.Body.Streams(ids, ctx, model.Config.HcMult);
        var rolled = Packing.Roll(ids, Cu, 1, 0);
        var depth = model.MtpDepths[0];
        var expected = depth.Forward(rolled, streams, ctx, model.Body.EmbedTokens, model.LmHead, model.Body.HcHead).Logits;
        // The other candidate: the collapsed, normed state the main logits come from, repeated over the streams.
        var collapsed = model.Body.Norm.forward(model.Body.HcHead.forward(streams));
        var repeated = collapsed.unsqueeze(2).expand(streams.shape).contiguous();
        var fromCollapsed = depth.Forward(rolled, repeated, ctx, model.Body.EmbedTokens, model.LmHead, model.Body.HcHead).Logits;

        Assert.That(MaxDiff(output.MainLogits, model.LmHead.forward(collapsed)), Is.LessThan(1e-5));
        Assert.That(MaxDiff(output.MtpLogits[0], expected), Is.LessThan(1e-5), "depth 1 reads the streams before hc_head");
        Assert.That(MaxDiff(fromCollapsed, expected), Is.GreaterThan(1e-3), "the collapsed normed state would give other logits");
    }
}
