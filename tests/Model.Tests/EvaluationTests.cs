using System.Text.Json.Nodes;
using TorchSharp;
using static TorchSharp.torch;

namespace Mtp.Model.Tests;

/// <summary><see cref="Evaluator"/> against direct computations on the same batches, and on a model before and after training.</summary>
public class EvaluationTests
{
    [Test]
    public void LossesAreTokenWeightedCrossEntropiesOfTheSameBatches()
    {
        using var model = DeepSeekV3Model.Load(TestUtil.Tiny(2), CPU, ScalarType.Float32);
        var options = new EvalOptions { Batches = 3, Batch = 2, SeqLen = 32 };
        var r = Evaluator.Run(model, new SyntheticTokenSource(256, 11), options);

        // The same batches, forwarded again; torch's own cross_entropy (sum over labels ≠ -100) instead of MtpLoss.
        var source = new SyntheticTokenSource(256, 11);
        var sums = new double[3];
        var counts = new long[3];
        var means = new List<double>();
        long accepted1 = 0, tokens = 0;
        using (no_grad())
            for (int i = 0; i < options.Batches; i++)
            {
                using var scope = NewDisposeScope();
                using var batch = source.Next(options.Batch, options.SeqLen);
                var o = model.Forward(batch);
                var pairs = new[] { (o.MainLogits, batch.Labels) }.Concat(o.MtpLogits.Zip(o.MtpLabels)).ToArray();
                for (int j = 0; j < pairs.Length; j++)
                {
                    var (logits, labels) = pairs[j];
                    double sum = nn.functional.cross_entropy(logits.reshape(-1, 256), labels.reshape(-1), ignore_index: -100, reduction: nn.Reduction.Sum).item<float>();
                    long n = labels.NotEqual(-100).sum().item<long>();
                    sums[j] += sum;
                    counts[j] += n;
                    if (j == 0) means.Add(sum / n);
                }
                accepted1 += o.MtpLogits[0].argmax(-1).eq(o.MtpLabels[0]).sum().item<long>();
                tokens += batch.InputIds.numel();
            }
        // Both sides are float32 sums taken in a different order (a mean times its count against a sum), so they agree to a
        // few float32 ulps, not exactly: 1e-6 relative is ~8 ulps. exp() turns an absolute error e in the loss into a
        // relative error e in the perplexity, so its tolerance is the loss's absolute one.
        const double rel = 1e-6;
        double expected = sums[0] / counts[0];
        Assert.That(r.MainLoss, Is.EqualTo(expected).Within(rel * expected));
        Assert.That(r.MainLabels, Is.EqualTo(counts[0]));
        Assert.That(r.Perplexity, Is.EqualTo(Math.Exp(expected)).Within(rel * expected * Math.Exp(expected)));
        for (int k = 1; k <= 2; k++)
        {
            Assert.That(r.Depths[k - 1].Loss, Is.EqualTo(sums[k] / counts[k]).Within(rel * sums[k] / counts[k]), $"depth {k}");
            Assert.That(r.Depths[k - 1].Labels, Is.EqualTo(counts[k]), $"depth {k}");
        }
        Assert.That(r.Depths[0].Accepted, Is.EqualTo(accepted1));
        Assert.That(r.Tokens, Is.EqualTo(tokens));
        // The weighting matters here: the batches hold different label counts, so a mean of the batch means differs,
        // by far more than the tolerance above (2.6e-5 relative on this model).
        Assert.That(Math.Abs(means.Average() - r.MainLoss), Is.GreaterThan(10 * rel * r.MainLoss));
        Assert.That(model.training, Is.True, "the model is put back in training mode");
    }

    [Test]
    public void RunsGiveTheSameNumbers()
    {
        using var model = DeepSeekV3Model.Load(TestUtil.Tiny(2), CPU, ScalarType.BFloat16);
        EvalResult Run() => Evaluator.Run(model, new SyntheticTokenSource(256, 3), new EvalOptions { Batches = 2, SeqLen = 32 });
        var (a, b) = (Run(), Run());
        Assert.That(b.MainLoss, Is.EqualTo(a.MainLoss));
        Assert.That(b.Depths, Is.EqualTo(a.Depths));
        Assert.That(b.ExpectedAcceptedLength, Is.EqualTo(a.ExpectedAcceptedLength));
    }

    [TestCase(TrainMode.All)]
    [TestCase(TrainMode.Mtp)]
    public void AcceptanceRisesAfterTrainingOnTheLearnableStream(TrainMode mode)
    {
        string dir = TestUtil.Tiny(2);
        var model = DeepSeekV3Model.Load(dir, CPU, ScalarType.Float32);
        var cfg = (JsonObject)JsonNode.Parse(File.ReadAllText(Path.Combine(dir, "config.json")))!;
        // Held out: another seed than the training stream's.
        EvalResult Eval() => Evaluator.Run(model, new SyntheticTokenSource(256, 1234), new EvalOptions { Batches = 4, Batch = 2, SeqLen = 64 });
        var before = Eval();
        using (var t = new Trainer(model, new SyntheticTokenSource(256, 7), new TrainerOptions { Lr = 3e-3, Warmup = 5, TotalSteps = 80, Batch = 2, SeqLen = 64, Train = mode }, cfg))
            for (int i = 0; i < 80; i++) t.Step();
        var after = Eval();
        using var _ = model;
        string Line(EvalResult r) => $"loss {r.MainLoss:F3} depth losses [{string.Join(", ", r.Depths.Select(d => d.Loss.ToString("F3")))}] " +
            $"acceptance [{string.Join(", ", r.Depths.Select(d => $"{d.Acceptance:F3}/{d.Conditioned:F3}"))}] length {r.ExpectedAcceptedLength:F3}";
        TestContext.Out.WriteLine($"before: {Line(before)}\nafter:  {Line(after)}");
        Assert.That(after.Depths[0].Acceptance, Is.GreaterThan(before.Depths[0].Acceptance!.Value + 0.2));
        Assert.That(after.Depths[0].Loss, Is.LessThan(before.Depths[0].Loss));
        Assert.That(after.ExpectedAcceptedLength, Is.GreaterThan(before.ExpectedAcceptedLength!.Value + 0.2));
        // MTP-only training leaves the main model as it was: its loss on the same held-out batches is unchanged.
        if (mode == TrainMode.Mtp) Assert.That(after.MainLoss, Is.EqualTo(before.MainLoss));
        else Assert.That(after.MainLoss, Is.LessThan(before.MainLoss));
    }
}
