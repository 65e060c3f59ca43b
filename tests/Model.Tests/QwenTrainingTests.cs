using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using Mtp.Adapters;
using Mtp.Model.Qwen;
using Mtp.SafeTensors;
using Mtp.Tests.Shared;
using TorchSharp;
using static TorchSharp.torch;

namespace Mtp.Model.Tests;

public class QwenTrainingTests
{
    static JsonObject Config(string dir) => (JsonObject)JsonNode.Parse(File.ReadAllText(Path.Combine(dir, "config.json")))!;

    static Trainer NewTrainer(string fixture, TrainerOptions o, ulong dataSeed = 7)
    {
        string dir = QwenTestUtil.Native(fixture);
        return new Trainer(QwenModel.Load(dir, CPU, ScalarType.Float32), new SyntheticTokenSource(256, dataSeed), o, Config(dir));
    }

    static float[] Params(MtpModel m) => m.TrainableParameters().SelectMany(p => TestUtil.F(p.Param)).ToArray();

    [TestCase("qwen3.5-moe")]
    [TestCase("qwen3.5-moe-fp8")]
    public void SaveAndResumeEqualsUninterruptedRun(string fixture)
    {
        const int K = 2;
        var o = new TrainerOptions { Warmup = 1, TotalSteps = 2 * K, Batch = 2, SeqLen = 32 };
        List<double[]> Losses(IEnumerable<StepResult> r) => r.Select(s => new[] { s.Loss, s.TotalLoss, s.GradNorm, s.Lr }.Concat(s.MtpLosses).ToArray()).ToList();
        List<double[]> straight;
        float[] straightParams;
        using (var t = NewTrainer(fixture, o))
        {
            straight = Losses(Enumerable.Range(0, 2 * K).Select(_ => t.Step()).ToList());
            straightParams = Params(t.Model);
        }
        string dir = RepoPaths.NewTempDir("qwen-resume");
        var split = new List<double[]>();
        using (var t = NewTrainer(fixture, o))
        {
            split.AddRange(Losses(Enumerable.Range(0, K).Select(_ => t.Step()).ToList()));
            t.Save(dir);
        }
        using (var t = TrainingCheckpoint.Resume(dir, CPU))
        {
            Assert.That(t.Model, Is.InstanceOf<QwenModel>());
            Assert.That(t.StepsDone, Is.EqualTo(K));
            split.AddRange(Losses(Enumerable.Range(0, K).Select(_ => t.Step()).ToList()));
            Assert.That(Params(t.Model), Is.EqualTo(straightParams));
            using var ck = Checkpoint.Open(dir);
            Assert.That(ck.Get("model.layers.0.linear_attn.A_log").Info.DType, Is.EqualTo(DType.F32));
        }
        Assert.That(split, Is.EqualTo(straight));
    }

    [TestCase("qwen3.5-moe")]
    [TestCase("qwen3.5-moe-fp8")]
    public void AfterOneBackwardEveryMtpParameterHasNonZeroGradient(string fixture)
    {
        using var model = QwenTestUtil.Load(fixture);
        using var scope = NewDisposeScope();
        using var batch = new SyntheticTokenSource(256, 1).Next(2, 64);
        model.Loss(batch, 0.1).Total.backward();
        var named = model.TrainableParameters();
        var mtp = named.Where(p => p.Name.StartsWith("mtp.", StringComparison.Ordinal)).ToList();
        Assert.That(mtp.Count, Is.EqualTo(19));
        foreach (var (name, p) in mtp)
        {
            Assert.That(p.grad, Is.Not.Null, name);
            Assert.That(p.grad!.abs().max().item<float>(), Is.GreaterThan(0f), name);
        }
        // The main model learns too (every main parameter reached by this batch).
        foreach (var (name, p) in named) Assert.That(p.grad is not null && p.grad.abs().max().item<float>() > 0, name);
    }

    [Test]
    public void MainAndMtpLossesFallOnTheSyntheticStream()
    {
        const int n = 40;
        using var t = NewTrainer("qwen3.5-moe", new TrainerOptions { Lr = 5e-3, Warmup = 4, TotalSteps = n, Batch = 2, SeqLen = 64 });
        var r = Enumerable.Range(0, n).Select(_ => t.Step()).ToList();
        double First(Func<StepResult, double> f) => r.Take(4).Average(f);
        double Last(Func<StepResult, double> f) => r.TakeLast(4).Average(f);
        TestContext.Out.WriteLine($"main {First(x => x.Loss):F3} -> {Last(x => x.Loss):F3}, mtp {First(x => x.MtpLosses[0]):F3} -> {Last(x => x.MtpLosses[0]):F3}, {r.Skip(1).Average(x => x.Seconds) * 1000:F1} ms/step");
        Assert.That(Last(x => x.Loss), Is.LessThan(First(x => x.Loss) - 1.0));
        Assert.That(Last(x => x.MtpLosses[0]), Is.LessThan(First(x => x.MtpLosses[0]) - 0.5));
        Assert.That(r.All(x => double.IsFinite(x.GradNorm) && x.GradNorm > 0));
    }

    /// <summary>
    /// Trained checkpoint → HF (fixture as reference: BF16 or FP8 with its scales) → training layout → strict load:
    /// every parameter equals the export dequantized here independently, and the re-imported model's loss equals
    /// the loss of the trained model with its weights replaced by that dequantized export.
    /// </summary>
    [TestCase("qwen3.5-moe")]
    [TestCase("qwen3.5-moe-fp8")]
    public void ExportAndReimportKeepsTheTrainedWeights(string fixture)
    {
        string fixtureDir = Path.Combine(RepoPaths.Fixtures, fixture);
        string root = RepoPaths.NewTempDir("qwen-export");
        string trainedDir = Path.Combine(root, "trained"), hfDir = Path.Combine(root, "hf"), reDir = Path.Combine(root, "native");
        using (var t = NewTrainer(fixture, new TrainerOptions { Lr = 5e-3, Warmup = 1, TotalSteps = 3, Batch = 2, SeqLen = 32 }))
        {
            for (int i = 0; i < 3; i++) t.Step();
            CheckpointIO.SaveModel(t.Model, trainedDir, t.Config!, DType.F32);
        }
        Converter.ToHf(trainedDir, hfDir, new ConvertOptions { Reference = fixtureDir });
        Converter.ToNative(hfDir, reDir, new ConvertOptions { DType = DType.F32 });
        var expected = Dequantize(hfDir, QwenConfig.Load(reDir));
        // The vision tower, not modelled, is carried through training and export byte for byte.
        using (var fx = Checkpoint.Open(fixtureDir))
        using (var hf = Checkpoint.Open(hfDir))
        {
            var visual = fx.Tensors.Where(t => t.Name.StartsWith("model.visual.", StringComparison.Ordinal)).ToList();
            Assert.That(visual, Is.Not.Empty);
            foreach (var v in visual) Assert.That(hf.Get(v.Name).File.GetBytes(hf.Get(v.Name).Info).ToArray(), Is.EqualTo(v.File.GetBytes(v.Info).ToArray()), v.Name);
        }

        using var trained = QwenModel.Load(trainedDir, CPU, ScalarType.Float32);
        using var re = QwenModel.Load(reDir, CPU, ScalarType.Float32);
        using var start = QwenTestUtil.Load(fixture);
        var reState = re.StateDict();
        Assert.That(reState.Keys.OrderBy(k => k, StringComparer.Ordinal), Is.EqualTo(expected.Keys.OrderBy(k => k, StringComparer.Ordinal)));
        foreach (var (name, values) in expected) Assert.That(TestUtil.F(reState[name]), Is.EqualTo(values), name);
        // The export carries the training: the re-imported weights are the trained ones up to the export's rounding.
        var tState = trained.StateDict();
        var sState = start.StateDict();
        int moved = 0;
        foreach (var name in expected.Keys)
        {
            var a = TestUtil.F(tState[name]);
            var b = TestUtil.F(reState[name]);
            double amax = a.Max(Math.Abs);
            for (int i = 0; i < a.Length; i++) Assert.That(b[i], Is.EqualTo(a[i]).Within(amax / 8 + 1e-6), name);
            if (!TestUtil.F(sState[name]).SequenceEqual(b)) moved++;
        }
        Assert.That(moved, Is.GreaterThan(expected.Count / 2));

        using (no_grad())
            foreach (var (name, p) in trained.TrainableParameters()) p.copy_(tensor(expected[name], p.shape));
        using var batch = new SyntheticTokenSource(256, 99).Next(2, 32);
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        var l1 = re.Loss(batch, 0.1);
        var l2 = trained.Loss(batch, 0.1);
        Assert.That(l1.Total.item<float>(), Is.EqualTo(l2.Total.item<float>()));
        Assert.That(l1.Mtp[0].item<float>(), Is.EqualTo(l2.Mtp[0].item<float>()));
    }

    /// <summary>
    /// Decodes an HF Qwen3.5 checkpoint into training-layout names by hand (test-side, independent of the adapter):
    /// BF16 / F32, FP8 E4M3 × block scale (weight_scale_inv, 128×128), per-expert weights stacked.
    /// </summary>
    static Dictionary<string, float[]> Dequantize(string hfDir, QwenConfig cfg)
    {
        using var ck = Checkpoint.Open(hfDir);
        int e = cfg.NumExperts, inter = cfg.MoeIntermediateSize, h = cfg.HiddenSize;
        var r = new Dictionary<string, float[]>(StringComparer.Ordinal);
        var rx = new Regex(@"^(.*\.mlp\.experts)\.(\d+)\.(gate|up|down)_proj\.weight$");
        foreach (var loc in ck.Tensors)
        {
            string n = loc.Name;
            if (n.StartsWith("model.visual.", StringComparison.Ordinal) || n.EndsWith("_scale_inv", StringComparison.Ordinal)) continue;
            float[] v = Decode(ck, loc);
            n = n.Replace("model.language_model.", "model.");
            n = n switch
            {
                "mtp.fc.weight" => "mtp.layers.0.eh_proj.weight",
                "mtp.pre_fc_norm_embedding.weight" => "mtp.layers.0.enorm.weight",
                "mtp.pre_fc_norm_hidden.weight" => "mtp.layers.0.hnorm.weight",
                "mtp.norm.weight" => "mtp.layers.0.final_layernorm.weight",
                _ => n,
            };
            var m = rx.Match(n);
            if (!m.Success) { r[n] = v; continue; }
            int ex = int.Parse(m.Groups[2].Value);
            bool down = m.Groups[3].Value == "down";
            string stacked = m.Groups[1].Value + (down ? ".down_proj" : ".gate_up_proj");
            if (!r.TryGetValue(stacked, out var dst)) r[stacked] = dst = new float[(long)e * (down ? 1 : 2) * inter * h];
            long offset = down ? (long)ex * h * inter : (long)ex * 2 * inter * h + (m.Groups[3].Value == "up" ? (long)inter * h : 0);
            v.CopyTo(dst, offset);
        }
        return r;
    }

    static float[] Decode(Checkpoint ck, TensorLocation loc)
    {
        var info = loc.Info;
        var bytes = loc.File.GetBytes(info);
        if (info.DType != DType.F8_E4M3) return CheckpointIO.ReadFloat(bytes, info);
        var sLoc = ck.Get(loc.Name + "_scale_inv");
        var scale = CheckpointIO.ReadFloat(sLoc.File.GetBytes(sLoc.Info), sLoc.Info);
        long rows = info.Shape[0], cols = info.Shape[1], gc = sLoc.Info.Shape[1];
        var v = new float[rows * cols];
        for (long i = 0; i < rows; i++)
            for (long j = 0; j < cols; j++)
                v[i * cols + j] = Mtp.Quant.Fp8E4M3.ToFloat(bytes[(int)(i * cols + j)]) * scale[(i / 128) * gc + j / 128];
        return v;
    }
}
