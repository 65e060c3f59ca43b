using System.Text.Json.Nodes;
using Mtp.Adapters;
using Mtp.Quant;
using Mtp.SafeTensors;
using Mtp.Tests.Shared;
using TorchSharp;
using static TorchSharp.torch;

namespace Mtp.Model.Tests;

/// <summary>
/// The released-layout DeepSeek-V3 FP8 fixture (written by PyTorch) converted to the training layout,
/// loaded into the model, trained, saved, resumed, exported back to FP8 with the fixture as reference,
/// and re-imported: the round trip through training steps that proves a conversion.
/// </summary>
public class DeepSeekV3FixtureRoundTripTests
{
    static readonly string Fixture = Path.Combine(RepoPaths.Fixtures, "deepseek-v3");
    const int K = 3;
    static readonly TrainerOptions Options = new() { Lr = 3e-3, Warmup = 2, TotalSteps = 2 * K, Batch = 2, SeqLen = 32 };

    string _dir = "";
    string _native = "";

    [OneTimeSetUp]
    public void Convert()
    {
        _dir = RepoPaths.NewTempDir("v3-roundtrip");
        _native = Path.Combine(_dir, "native");
        Converter.ToNative(Fixture, _native, new ConvertOptions { DType = DType.F32 });
    }

    [OneTimeTearDown] public void Cleanup() => Directory.Delete(_dir, true);

    static JsonObject Config(string dir) => (JsonObject)JsonNode.Parse(File.ReadAllText(Path.Combine(dir, "config.json")))!;

    Trainer NewTrainer() =>
        new(MtpModel.Load(_native, CPU, ScalarType.Float32), new SyntheticTokenSource(256, 11), Options, Config(_native));

    [Test]
    public void ConvertedFixtureLoadsIntoTheDeepSeekV3ModelWithMtp()
    {
        using var model = MtpModel.Load(_native, CPU, ScalarType.Float32);
        Assert.That(model, Is.InstanceOf<DeepSeekV3Model>());
        Assert.That(model.MtpDepthCount, Is.EqualTo(1));
        Assert.That(model.StateDict().Keys, Has.Some.StartsWith("mtp.layers.0.mlp.experts.gate_up_proj"));
    }

    [Test]
    public void UntrainedFixtureGivesFiniteLossesNearLnV()
    {
        using var model = MtpModel.Load(_native, CPU, ScalarType.Float32);
        using var scope = NewDisposeScope();
        using var batch = new SyntheticTokenSource(256, 3).Next(2, 32);
        LossOutput loss;
        using (no_grad()) loss = model.Loss(batch, 0.1);
        double lnV = Math.Log(256);
        double main = loss.Main.item<float>(), mtp = loss.Mtp[0].item<float>();
        Assert.That(double.IsFinite(main) && double.IsFinite(mtp));
        Assert.That(main, Is.EqualTo(lnV).Within(0.5), "random weights predict roughly uniformly");
        Assert.That(mtp, Is.EqualTo(lnV).Within(0.5));
    }

    [Test]
    public void EveryMtpParameterGetsAGradientAndLossesFall()
    {
        using (var model = MtpModel.Load(_native, CPU, ScalarType.Float32))
        using (var scope = NewDisposeScope())
        {
            using var batch = new SyntheticTokenSource(256, 5).Next(2, 32);
            model.Loss(batch, 0.1).Total.backward();
            var mtp = model.TrainableParameters().Where(p => p.Name.StartsWith("mtp.", StringComparison.Ordinal)).ToList();
            Assert.That(mtp, Has.Count.GreaterThan(10));
            foreach (var (name, p) in mtp)
                Assert.That(p.grad?.abs().max().item<float>() ?? 0f, Is.GreaterThan(0f), name);
        }
        using var t = new Trainer(MtpModel.Load(_native, CPU, ScalarType.Float32), new SyntheticTokenSource(256, 9),
            new TrainerOptions { Lr = 3e-2, Warmup = 3, TotalSteps = 60, Batch = 2, SeqLen = 32 }, Config(_native));
        var r = Enumerable.Range(0, 60).Select(_ => t.Step()).ToList();
        TestContext.Out.WriteLine(string.Join(" ", r.Select(x => $"{x.Loss:F2}/{x.MtpLosses[0]:F2}/{x.GradNorm:F1}")));
        Assert.That(r.TakeLast(5).Average(x => x.Loss), Is.LessThan(r.Take(5).Average(x => x.Loss) - 0.3), "main loss falls");
        Assert.That(r.TakeLast(5).Average(x => x.MtpLosses[0]), Is.LessThan(r.Take(5).Average(x => x.MtpLosses[0]) - 0.3), "MTP loss falls");
    }

    [Test]
    public void SaveAndResumeContinueExactlyAsAnUninterruptedRun()
    {
        double[] straight;
        using (var t = NewTrainer())
            straight = Enumerable.Range(0, 2 * K).Select(_ => t.Step().TotalLoss).ToArray();

        string saved = Path.Combine(_dir, "half");
        var split = new List<double>();
        using (var t = NewTrainer())
        {
            for (int i = 0; i < K; i++) split.Add(t.Step().TotalLoss);
            t.Save(saved);
        }
        using (var t = TrainingCheckpoint.Resume(saved, CPU))
            for (int i = 0; i < K; i++) split.Add(t.Step().TotalLoss);
        Assert.That(split, Is.EqualTo(straight), "bitwise-equal loss sequence");
    }

    [Test]
    public void TrainedCheckpointExportsToFp8AndReimportsConsistently()
    {
        string trained = Path.Combine(_dir, "trained"), export = Path.Combine(_dir, "export"), back = Path.Combine(_dir, "reimported");
        using (var t = NewTrainer())
        {
            for (int i = 0; i < K; i++) t.Step();
            t.Save(trained);
        }
        var toHf = Converter.ToHf(trained, export, new ConvertOptions { Reference = Fixture });
        Converter.ToNative(export, back, new ConvertOptions { DType = DType.F32 });

        // The export keeps the fixture's layout: same tensor names, dtypes and shapes (FP8 weights with F32 scales).
        using (var exported = Checkpoint.Open(export))
        using (var reference = Checkpoint.Open(Fixture))
        {
            Assert.That(exported.Tensors.Select(t => (t.Name, t.Info.DType, t.Info.ShapeText)),
                Is.EquivalentTo(reference.Tensors.Select(t => (t.Name, t.Info.DType, t.Info.ShapeText))));
            // Independent check of the re-import: dequantize one exported FP8 weight with the kernels directly.
            const string name = "model.layers.1.self_attn.kv_b_proj.weight";
            var w = exported.Get(name).Info;
            var s = exported.Get("model.layers.1.self_attn.kv_b_proj.weight_scale_inv");
            var f32 = new byte[w.ElementCount * 4];
            BlockDequant.Fp8(exported.Get(name).File.GetBytes(w), (int)w.Shape[0], (int)w.Shape[1], s.File.GetBytes(s.Info), ScaleFormat.F32, BlockSize.Fp8Default, f32, FloatFormat.F32);
            using var native = Checkpoint.Open(back);
            Assert.That(native.Get(name).File.GetBytes(native.Get(name).Info).ToArray(), Is.EqualTo(f32));
        }

        using var trainedModel = MtpModel.Load(trained, CPU, ScalarType.Float32);
        using var reimported = MtpModel.Load(back, CPU, ScalarType.Float32);
        using var scope = NewDisposeScope();
        var a = trainedModel.StateDict();
        var b = reimported.StateDict();
        Assert.That(b.Keys, Is.EquivalentTo(a.Keys));
        foreach (var (n, ta) in a)
        {
            // FP8 E4M3 keeps 3 mantissa bits: a re-quantized weight is within half a step (1/16 relative) of the
            // trained one, relative to its block's largest value; unquantized tensors come back exactly.
            double err = (ta - b[n]).abs().max().item<float>(), mag = ta.abs().max().item<float>();
            Assert.That(err, Is.LessThanOrEqualTo(mag / 16 + 1e-30), n);
        }

        // The re-imported model's loss equals the loss of the trained model carrying the exported weights.
        using var batch = new SyntheticTokenSource(256, 21).Next(2, 32);
        double reimportedLoss, exportedWeightsLoss, trainedLoss;
        using (no_grad())
        {
            reimportedLoss = reimported.Loss(batch, 0.1).Total.item<float>();
            trainedLoss = trainedModel.Loss(batch, 0.1).Total.item<float>();
            foreach (var (n, ta) in a) ta.copy_(b[n]);
            exportedWeightsLoss = trainedModel.Loss(batch, 0.1).Total.item<float>();
        }
        Assert.That(reimportedLoss, Is.EqualTo(exportedWeightsLoss));
        Assert.That(reimportedLoss, Is.EqualTo(trainedLoss).Within(0.05), "FP8 export barely moves the loss");
        Assert.That(toHf.TensorsWritten, Is.GreaterThan(0));
    }
}
