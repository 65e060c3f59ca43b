using System.Text.Json.Nodes;
using Mtp.Adapters;
using Mtp.SafeTensors;
using Mtp.Tests.Shared;
using TorchSharp;
using static TorchSharp.torch;

namespace Mtp.Model.Tests;

/// <summary>
/// The families that share DeepSeek-V3's model, trained from their PyTorch-made fixtures: GLM-4.5 (grouped-query
/// attention, BF16) and DeepSeek-V3.2 (MLA with the sparse-attention indexer, FP8 with power-of-two scales). Strict load,
/// gradients, falling losses, save/resume bit-exact, export and re-import.
/// </summary>
[TestFixture("glm-4.5", Families.Glm45)]
[TestFixture("deepseek-v3.2", Families.DeepSeekV32)]
public class NextNFamilyTrainingTests(string fixture, string family)
{
    readonly string Fixture = fixture;

    static JsonObject Config(string dir) => (JsonObject)JsonNode.Parse(File.ReadAllText(Path.Combine(dir, "config.json")))!;

    Trainer NewTrainer(TrainerOptions o, string? dir = null)
    {
        dir ??= TestUtil.Native(Fixture);
        return new Trainer(MtpModel.Load(dir, CPU, ScalarType.Float32), new SyntheticTokenSource(256, 7), o, Config(dir));
    }

    /// <summary>Tensors that this family's model has and a DeepSeek-V3 one does not, main and MTP.</summary>
    string[] FamilyTensors => family == Families.Glm45
        ? new[] { "model.layers.0.self_attn.q_proj.bias", "model.layers.2.self_attn.k_norm.weight", "mtp.layers.0.self_attn.v_proj.bias" }
        : new[] { "model.layers.0.self_attn.indexer.wq_b.weight", "model.layers.2.self_attn.indexer.k_norm.bias", "mtp.layers.0.self_attn.indexer.weights_proj.weight" };

    static float[] Params(MtpModel m) => m.TrainableParameters().SelectMany(p => TestUtil.F(p.Param)).ToArray();

    [Test]
    public void LoadsAsItsFamilyWithItsAttentionTensorsAndRefusesACheckpointMissingOne()
    {
        using var tensors = NewDisposeScope(); // frees the test's temporaries now, not in a later test's finalizer run
        string dir = TestUtil.Native(Fixture);
        using (var m = MtpModel.Load(dir, CPU, ScalarType.Float32))
        {
            Assert.That(m.Family, Is.EqualTo(family));
            var state = m.StateDict();
            foreach (string n in FamilyTensors.Concat(new[] { "model.layers.0.mlp.gate_proj.weight", "mtp.layers.0.mlp.gate.e_score_correction_bias", "mtp.layers.0.mlp.shared_experts.up_proj.weight" }))
                Assert.That(state.Keys, Does.Contain(n));
        }
        foreach (string victim in FamilyTensors)
        {
            string broken = TestUtil.Rewrite(dir, l => l.Where(t => t.Spec.Name != victim).ToList());
            var e = Assert.Throws<ModelLoadException>(() => MtpModel.Load(broken, CPU, ScalarType.Float32))!;
            Assert.That(e.Message, Does.Contain(victim));
        }
    }

    [Test]
    public void AfterOneBackwardEveryParameterOutsideTheIndexerHasANonZeroGradient()
    {
        using var tensors = NewDisposeScope(); // frees the test's temporaries now, not in a later test's finalizer run
        using var model = MtpModel.Load(TestUtil.Native(Fixture), CPU, ScalarType.Float32);
        using var batch = new SyntheticTokenSource(256, 1).Next(2, 64);
        model.Loss(batch, 0.1).Total.backward();
        var named = model.TrainableParameters();
        // GLM: the fixture's 34 MTP tensors, minus the 2 copies dropped as identical, the 12 per-expert weights stacked
        // into 2, and the router's correction bias (a buffer). V3.2: 59 HF tensors of which 22 FP8 weights bring a scale
        // each (the scales go), 2 copies dropped, 12 experts stacked into 2, the bias.
        int expected = family == Families.Glm45 ? 34 - 2 - 12 + 2 - 1 : 59 - 22 - 2 - 12 + 2 - 1;
        Assert.That(named.Count(p => p.Name.StartsWith("mtp.", StringComparison.Ordinal)), Is.EqualTo(expected));
        foreach (var (name, p) in named)
        {
            // The indexer only selects keys (no gradient passes through a top-k); DeepSeek trains it with its own loss.
            bool indexer = name.Contains(".self_attn.indexer.", StringComparison.Ordinal);
            bool moved = p.grad is not null && p.grad.abs().max().item<float>() > 0;
            Assert.That(moved, Is.EqualTo(!indexer), name);
        }
    }

    [Test]
    public void MainAndMtpLossesFallOnTheSyntheticStream()
    {
        using var tensors = NewDisposeScope(); // frees the test's temporaries now, not in a later test's finalizer run
        const int n = 40;
        using var t = NewTrainer(new TrainerOptions { Lr = 5e-3, Warmup = 4, TotalSteps = n, Batch = 2, SeqLen = 64 });
        var r = Enumerable.Range(0, n).Select(_ => t.Step()).ToList();
        double First(Func<StepResult, double> f) => r.Take(4).Average(f);
        double Last(Func<StepResult, double> f) => r.TakeLast(4).Average(f);
        TestContext.Out.WriteLine($"main {First(x => x.Loss):F3} -> {Last(x => x.Loss):F3}, mtp {First(x => x.MtpLosses[0]):F3} -> {Last(x => x.MtpLosses[0]):F3}");
        // Measured: main 5.52 -> 4.15 (GLM-4.5) and -> 4.57 (V3.2), MTP 5.54 -> 4.26 / 4.79.
        Assert.That(Last(x => x.Loss), Is.LessThan(First(x => x.Loss) - 0.5));
        Assert.That(Last(x => x.MtpLosses[0]), Is.LessThan(First(x => x.MtpLosses[0]) - 0.3));
    }

    [Test]
    public void SaveAndResumeEqualsUninterruptedRun()
    {
        using var tensors = NewDisposeScope(); // frees the test's temporaries now, not in a later test's finalizer run
        const int K = 2;
        var o = new TrainerOptions { Warmup = 1, TotalSteps = 2 * K, Batch = 2, SeqLen = 32 };
        List<double[]> Losses(IEnumerable<StepResult> r) => r.Select(s => new[] { s.Loss, s.TotalLoss, s.GradNorm, s.Lr }.Concat(s.MtpLosses).ToArray()).ToList();
        List<double[]> straight;
        float[] straightParams;
        using (var t = NewTrainer(o))
        {
            straight = Losses(Enumerable.Range(0, 2 * K).Select(_ => t.Step()).ToList());
            straightParams = Params(t.Model);
        }
        string dir = RepoPaths.NewTempDir("nextn-resume");
        var split = new List<double[]>();
        using (var t = NewTrainer(o))
        {
            split.AddRange(Losses(Enumerable.Range(0, K).Select(_ => t.Step()).ToList()));
            t.Save(dir);
        }
        using (var t = TrainingCheckpoint.Resume(dir, CPU))
        {
            Assert.That(t.Model.Family, Is.EqualTo(family));
            split.AddRange(Losses(Enumerable.Range(0, K).Select(_ => t.Step()).ToList()));
            Assert.That(Params(t.Model), Is.EqualTo(straightParams));
        }
        Assert.That(split, Is.EqualTo(straight));
    }

    /// <summary>
    /// Trained (F32) -> HF with the fixture as reference -> training layout: every BF16 tensor of the release comes back
    /// as the trained one rounded to BF16; an FP8 one (V3.2) within its block's FP8 step; training moved most of them.
    /// </summary>
    [Test]
    public void ExportAndReimportGiveTheTrainedWeightsInTheReleaseDtype()
    {
        using var tensors = NewDisposeScope(); // frees the test's temporaries now, not in a later test's finalizer run
        string root = RepoPaths.NewTempDir("nextn-export");
        string trainedDir = Path.Combine(root, "trained"), hfDir = Path.Combine(root, "hf"), reDir = Path.Combine(root, "native");
        using (var t = NewTrainer(new TrainerOptions { Lr = 5e-3, Warmup = 1, TotalSteps = 3, Batch = 2, SeqLen = 32 }))
        {
            for (int i = 0; i < 3; i++) t.Step();
            CheckpointIO.SaveModel(t.Model, trainedDir, t.Config!, DType.F32);
        }
        Converter.ToHf(trainedDir, hfDir, new ConvertOptions { Reference = Path.Combine(RepoPaths.Fixtures, Fixture) });
        Converter.ToNative(hfDir, reDir, new ConvertOptions { DType = DType.F32 });
        using var trained = MtpModel.Load(trainedDir, CPU, ScalarType.Float32);
        using var re = MtpModel.Load(reDir, CPU, ScalarType.Float32);
        using var start = MtpModel.Load(TestUtil.Native(Fixture), CPU, ScalarType.Float32);
        var (a, b, s0) = (trained.StateDict(), re.StateDict(), start.StateDict());
        Assert.That(b.Keys.Order(), Is.EqualTo(a.Keys.Order()));
        HashSet<string> fp8;
        using (var release = Checkpoint.Open(Path.Combine(RepoPaths.Fixtures, Fixture)))
            fp8 = release.Tensors.Where(x => x.Info.DType == DType.F8_E4M3).Select(x => x.Name).ToHashSet(StringComparer.Ordinal);
        bool Quantized(string name) => fp8.Any(h => h.EndsWith(name.Split('.', 4)[^1].Replace("mlp.experts.gate_up_proj", "gate_proj.weight")
            .Replace("mlp.experts.down_proj", "down_proj.weight"), StringComparison.Ordinal));
        int moved = 0, approximate = 0;
        foreach (var (name, t) in a)
        {
            bool keptF32 = name.EndsWith("e_score_correction_bias", StringComparison.Ordinal) || name.Contains(".indexer.k_norm.", StringComparison.Ordinal);
            var got = TestUtil.F(b[name]);
            if (Quantized(name) && !keptF32)
            {
                var want = TestUtil.F(t);
                double amax = want.Max(Math.Abs);
                for (int i = 0; i < want.Length; i++) Assert.That(got[i], Is.EqualTo(want[i]).Within(amax / 8 + 1e-6), name);
                approximate++;
            }
            else Assert.That(got, Is.EqualTo(keptF32 ? TestUtil.F(t) : TestUtil.F(t.to(ScalarType.BFloat16))), name);
            if (!TestUtil.F(s0[name]).SequenceEqual(got)) moved++;
        }
        Assert.That(approximate, fp8.Count == 0 ? Is.Zero : Is.GreaterThan(0), "FP8 weights are compared within their FP8 step");
        Assert.That(moved, Is.GreaterThan(a.Count / 2), "the export carries the training");
    }
}

/// <summary>GLM-4.5's attention tensors are sized from its grouped-query config.</summary>
public class Glm45ShapeTests
{
    [Test]
    public void Glm45AttentionShapesFollowTheGqaConfig()
    {
        using var tensors = NewDisposeScope(); // frees the test's temporaries now, not in a later test's finalizer run
        using var m = MtpModel.Load(TestUtil.Native("glm-4.5"), CPU, ScalarType.Float32);
        var state = m.StateDict();
        Assert.That(state["model.layers.1.self_attn.q_proj.weight"].shape, Is.EqualTo(new long[] { 64, 32 }), "4 heads of 16");
        Assert.That(state["model.layers.1.self_attn.k_proj.bias"].shape, Is.EqualTo(new long[] { 32 }), "2 key/value heads of 16");
    }
}
