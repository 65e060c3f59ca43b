using TorchSharp;
using static TorchSharp.torch;

namespace Mtp.Model.Tests;

public class LossTests
{
    [Test]
    public void RollIsPerSequenceWithMaskedTail()
    {
        using var scope = NewDisposeScope();
        var x = tensor(new long[] { 1, 2, 3, 4, 5, 6 }).view(1, 6);
        long[] cu = { 0, 3, 6 };
        Assert.That(Packing.Roll(x, cu, 1, 0).data<long>().ToArray(), Is.EqualTo(new long[] { 2, 3, 0, 5, 6, 0 }));
        Assert.That(Packing.Roll(x, cu, 1, -100).data<long>().ToArray(), Is.EqualTo(new long[] { 2, 3, -100, 5, 6, -100 }));
        Assert.That(Packing.Roll(x, cu, 2, 0).data<long>().ToArray(), Is.EqualTo(new long[] { 3, 0, 0, 6, 0, 0 }));
        Assert.That(Packing.Roll(x, new long[] { 0, 6 }, 1, 0).data<long>().ToArray(), Is.EqualTo(new long[] { 2, 3, 4, 5, 6, 0 }));
        // Two rows, sequences of unequal length, never crossing rows.
        var y = tensor(new long[] { 1, 2, 3, 4, 5, 6, 7, 8 }).view(2, 4);
        Assert.That(Packing.Roll(y, new long[] { 0, 1, 4, 6, 8 }, 1, 0).data<long>().ToArray(), Is.EqualTo(new long[] { 0, 3, 4, 0, 6, 0, 8, 0 }));
        // The caller's tensor is untouched.
        Assert.That(x.data<long>().ToArray(), Is.EqualTo(new long[] { 1, 2, 3, 4, 5, 6 }));
        Assert.Throws<ArgumentException>(() => Packing.Validate(new long[] { 0, 3, 8 }, 2, 4));
    }

    [Test]
    public void ForwardDoesNotMutateBatchAndRollsLabels()
    {
        using var scope = NewDisposeScope();
        using var model = DeepSeekV3Model.Load(TestUtil.Tiny(2), CPU, ScalarType.Float32);
        var batch = TestUtil.Batch(new long[,] { { 1, 2, 3, 4, 5, 6 } }, new long[] { 0, 3, 6 });
        var before = (batch.InputIds.data<long>().ToArray(), batch.Labels.data<long>().ToArray());
        using var _ = no_grad();
        var o = model.Forward(batch);
        Assert.That(batch.InputIds.data<long>().ToArray(), Is.EqualTo(before.Item1));
        Assert.That(batch.Labels.data<long>().ToArray(), Is.EqualTo(before.Item2));
        Assert.That(before.Item2, Is.EqualTo(new long[] { 2, 3, -100, 5, 6, -100 }));
        Assert.That(o.MtpLabels[0].data<long>().ToArray(), Is.EqualTo(new long[] { 3, -100, -100, 6, -100, -100 }));
        Assert.That(o.MtpLabels[1].data<long>().ToArray(), Is.EqualTo(new long[] { -100, -100, -100, -100, -100, -100 }));
    }

    [Test]
    public void LossMatchesDirectPerPositionComputation()
    {
        using var scope = NewDisposeScope();
        const int V = 5, S = 6;
        var g = new Generator(2);
        var main = randn(new long[] { 1, S, V }, generator: g);
        var m1 = randn(new long[] { 1, S, V }, generator: g);
        var m2 = randn(new long[] { 1, S, V }, generator: g);
        long[] lab = { 1, 4, -100, 0, 2, -100 }, l1 = { 4, -100, -100, 2, -100, -100 }, l2 = { 3, 3, -100, 1, 0, -100 };
        var r = MtpLoss.Compute(main, tensor(lab).view(1, S), new[] { m1, m2 }, new[] { tensor(l1).view(1, S), tensor(l2).view(1, S) }, 0.3);
        double Direct(Tensor logits, long[] labels)
        {
            var f = TestUtil.F(logits);
            double sum = 0; int n = 0;
            for (int t = 0; t < S; t++)
            {
                if (labels[t] == -100) continue;
                double mx = double.MinValue;
                for (int v = 0; v < V; v++) mx = Math.Max(mx, f[t * V + v]);
                double z = 0;
                for (int v = 0; v < V; v++) z += Math.Exp(f[t * V + v] - mx);
                sum += -(f[t * V + labels[t]] - mx - Math.Log(z));
                n++;
            }
            return sum / n;
        }
        double dm = Direct(main, lab), d1 = Direct(m1, l1), d2 = Direct(m2, l2);
        Assert.That(r.Main.item<float>(), Is.EqualTo(dm).Within(1e-5));
        Assert.That(r.Mtp[0].item<float>(), Is.EqualTo(d1).Within(1e-5));
        Assert.That(r.Mtp[1].item<float>(), Is.EqualTo(d2).Within(1e-5));
        Assert.That(r.Total.item<float>(), Is.EqualTo(dm + 0.3 / 2 * (d1 + d2)).Within(1e-5));
        // All labels ignored: zero, not NaN.
        Assert.That(MtpLoss.CrossEntropy(main, HeldScalars.Full(new long[] { 1, S }, -100L)).item<float>(), Is.EqualTo(0f));
    }

    [TestCase(1)]
    [TestCase(2)]
    public void RandomWeightLossesAreNearLnV(int depths)
    {
        using var scope = NewDisposeScope();
        using var model = DeepSeekV3Model.Load(TestUtil.Tiny(depths), CPU, ScalarType.Float32);
        var batch = TestUtil.RandomBatch(2, 32, new long[] { 0, 20, 32, 64 }, 256, 3);
        using var _ = no_grad();
        var l = model.Loss(batch, 0.1);
        Assert.That(l.Mtp, Has.Count.EqualTo(depths));
        foreach (var t in new[] { l.Main }.Concat(l.Mtp))
        {
            Assert.That(float.IsFinite(t.item<float>()));
            Assert.That(t.item<float>(), Is.EqualTo(Math.Log(256)).Within(0.15));
        }
    }
}
