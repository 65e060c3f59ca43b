using Mtp.Model.Qwen;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Mtp.Model.Tests;

/// <summary>
/// D = 2 end to end: depth 2's logits computed here from the modules (depth 1's hidden state h1, the ids rolled by 2
/// inside each packed sequence, depth 2's own block) equal Forward's. The controls show the comparison tells apart
/// the plausible wrong wirings (h1 normed or not, ids rolled by 1, depth 1's block reused).
/// </summary>
public class TwoDepthTests
{
    // Two packed documents of 9 and 7 tokens in one row.
    static readonly long[] Cu = { 0, 9, 16 };

    /// <summary>ids shifted left by k inside each sequence of <see cref="Cu"/>, <paramref name="fill"/> where none is left (written out here, not Packing.Roll).</summary>
    static Tensor RollByHand(long[] ids, int k, long fill = 0)
    {
        var r = new long[ids.Length];
        for (int s = 0; s + 1 < Cu.Length; s++)
            for (long p = Cu[s]; p < Cu[s + 1]; p++) r[p] = p + k < Cu[s + 1] ? ids[p + k] : fill;
        return tensor(r).view(1, ids.Length);
    }

    static long[] Ids(int vocab, int seed)
    {
        var rng = new Random(seed);
        return Enumerable.Range(0, (int)Cu[^1]).Select(_ => (long)rng.Next(vocab)).ToArray();
    }

    static PackedBatch Batch(long[] ids)
    {
        var t = tensor(ids).view(1, ids.Length);
        return new PackedBatch(t, Packing.NextTokenLabels(t, Cu), Cu);
    }

    static T Child<T>(nn.Module m, string name) where T : nn.Module =>
        (T)m.named_children().Single(c => c.name == name).module;

    static double MaxDiff(Tensor x, Tensor y) => (x.to(ScalarType.Float64) - y.to(ScalarType.Float64)).abs().max().item<double>();

    [Test]
    public void DeepSeekV3SecondDepthEqualsDirectComputation()
    {
        using var scope = NewDisposeScope();
        using var m = DeepSeekV3Model.Load(TestUtil.Tiny(2), CPU, ScalarType.Float32);
        Assert.That(m.MtpDepthCount, Is.EqualTo(2));
        // The random checkpoint's norms are all ones, under which normalising twice changes nothing: give every norm
        // its own weights, so that a norm applied where it should not be (or missing) shows.
        var g = new Generator(5);
        using (no_grad())
            foreach (var (n, p) in m.named_parameters().Where(p => p.name.EndsWith("norm.weight")))
                p.copy_(rand(p.shape, generator: g).Plus(0.5));
        var ids = Ids(m.VocabSize, 11);
        using var batch = Batch(ids);
        using var _ = no_grad();
        var o = m.Forward(batch);
        Assert.That(o.MtpLabels[1].data<long>().ToArray(), Is.EqualTo(RollByHand(ids, 3, Packing.IgnoreIndex).data<long>().ToArray()),
            "depth 2 predicts token t+3 (-100 where the sequence has none)");

        var ctx = m.Context(Cu, 1, ids.Length);
        var x0 = tensor(ids).view(1, ids.Length);
        var emb = m.Body.EmbedTokens;
        // h0: what the main model hands to depth 1, the last hidden state after model.norm (issue 17 item 1, src/Model/README.md).
        var h0 = m.Body.Norm.forward(m.Body.Hidden(x0, ctx));
        var (h1, l1) = m.MtpDepths[0].Forward(RollByHand(ids, 1), h0, ctx, emb, m.LmHead);
        Assert.That(MaxDiff(l1, o.MtpLogits[0]), Is.EqualTo(0.0), "depth 1 as Forward runs it");

        var d2 = m.MtpDepths[1];
        Tensor Depth2(Tensor hPrev, Tensor rolled, MtpDepth block)
        {
            var x = Child<Linear>(d2, "eh_proj").forward(cat(new[] { Child<RmsNorm>(d2, "enorm").forward(emb.forward(rolled)), Child<RmsNorm>(d2, "hnorm").forward(hPrev) }, -1));
            var h = x.Plus(Child<MlaAttention>(block, "self_attn").forward(Child<RmsNorm>(block, "input_layernorm").forward(x), ctx));
            h = h.Plus(Child<MoeBlock>(block, "mlp").forward(Child<RmsNorm>(block, "post_attention_layernorm").forward(h)));
            return m.LmHead.forward(Child<RmsNorm>(d2, "final_layernorm").forward(h));
        }
        var want = Depth2(h1, RollByHand(ids, 2), d2);
        Assert.That(MaxDiff(want, o.MtpLogits[1]), Is.LessThanOrEqualTo(1e-6), "depth 2 from h1 (before depth 1's final_layernorm) and ids rolled by 2");

        var normedH1 = Child<RmsNorm>(m.MtpDepths[0], "final_layernorm").forward(h1);
        Assert.That(MaxDiff(Depth2(normedH1, RollByHand(ids, 2), d2), o.MtpLogits[1]), Is.GreaterThan(1e-3), "control: h1 after final_layernorm");
        Assert.That(MaxDiff(Depth2(h1, RollByHand(ids, 1), d2), o.MtpLogits[1]), Is.GreaterThan(1e-3), "control: ids rolled by 1");
        Assert.That(MaxDiff(Depth2(h0, RollByHand(ids, 2), d2), o.MtpLogits[1]), Is.GreaterThan(1e-3), "control: h0 instead of h1");
        Assert.That(MaxDiff(Depth2(h1, RollByHand(ids, 2), m.MtpDepths[0]), o.MtpLogits[1]), Is.GreaterThan(1e-3), "control: depth 1's block");
    }

    [Test]
    public void Qwen3NextSecondDepthEqualsDirectComputation()
    {
        using var scope = NewDisposeScope();
        using var m = QwenNextTests.RandomModel(seed: 6);
        Assert.That(m.MtpDepthCount, Is.EqualTo(2));
        var ids = Ids(m.VocabSize, 12);
        using var batch = Batch(ids);
        using var _ = no_grad();
        var o = m.Forward(batch);

        var ctx = m.Context(Cu, 1, ids.Length);
        var emb = m.Body.EmbedTokens;
        var h0 = m.Body.Norm.forward(m.Body.Hidden(tensor(ids).view(1, ids.Length), ctx));
        var fusion = m.MtpLayers[0];
        var h1 = fusion.Depth(emb.forward(RollByHand(ids, 1)), h0, ctx, fusion);
        Assert.That(MaxDiff(m.Head(h1), o.MtpLogits[0]), Is.EqualTo(0.0), "depth 1 as Forward runs it");

        // Depth 2: layer 1's block between the fusion modules every depth shares (layer 0's), h1 as depth 1 left it (normed).
        Tensor Depth2(Tensor hPrev, Tensor rolled, QwenMtpLayer block, bool normOut = true)
        {
            var x = Child<Linear>(fusion, "eh_proj").forward(cat(new[]
            {
                Child<ZeroCenteredRmsNorm>(fusion, "enorm").forward(emb.forward(rolled)),
                Child<ZeroCenteredRmsNorm>(fusion, "hnorm").forward(hPrev),
            }, -1));
            var h = block.Block(x, ctx);
            return normOut ? Child<ZeroCenteredRmsNorm>(fusion, "final_layernorm").forward(h) : h;
        }
        var h2 = Depth2(h1, RollByHand(ids, 2), m.MtpLayers[1]);
        Assert.That(MaxDiff(m.Head(h2), o.MtpLogits[1]), Is.LessThanOrEqualTo(1e-6), "depth 2 from h1 and ids rolled by 2");

        var h1Raw = Depth2(h0, RollByHand(ids, 1), fusion, normOut: false);   // depth 1's block output before the final norm
        Assert.That(MaxDiff(m.Head(Depth2(h1Raw, RollByHand(ids, 2), m.MtpLayers[1])), o.MtpLogits[1]), Is.GreaterThan(1e-3), "control: h1 before the final norm");
        Assert.That(MaxDiff(m.Head(Depth2(h1, RollByHand(ids, 1), m.MtpLayers[1])), o.MtpLogits[1]), Is.GreaterThan(1e-3), "control: ids rolled by 1");
        Assert.That(MaxDiff(m.Head(Depth2(h1, RollByHand(ids, 2), fusion)), o.MtpLogits[1]), Is.GreaterThan(1e-3), "control: layer 0's block");
    }
}
