using System.Text.Json.Nodes;
using Mtp.Adapters;
using Mtp.SafeTensors;
using Mtp.Tests.Shared;
using TorchSharp;
using static TorchSharp.torch;

namespace Mtp.Model.Tests;

/// <summary>
/// GLM-4.5 (the DeepSeek-V3 model with grouped-query attention) trained from the PyTorch-made fixture: strict load,
/// gradients in every MTP tensor, falling losses, save/resume bit-exact, export and re-import.
/// </summary>
public class Glm45TrainingTests
{
    const string Fixture = "glm-4.5";

    static JsonObject Config(string dir) => (JsonObject)JsonNode.Parse(File.ReadAllText(Path.Combine(dir, "config.json")))!;

    static Trainer NewTrainer(TrainerOptions o, string? dir = null)
    {
        dir ??= TestUtil.Native(Fixture);
        return new Trainer(MtpModel.Load(dir, CPU, ScalarType.Float32), new SyntheticTokenSource(256, 7), o, Config(dir));
    }

    static float[] Params(MtpModel m) => m.TrainableParameters().SelectMany(p => TestUtil.F(p.Param)).ToArray();

    [Test]
    public void LoadsAsGlmWithItsAttentionTensorsAndRefusesACheckpointMissingOne()
    {
        string dir = TestUtil.Native(Fixture);
        using (var m = MtpModel.Load(dir, CPU, ScalarType.Float32))
        {
            Assert.That(m.Family, Is.EqualTo(Families.Glm45));
            var state = m.StateDict();
            foreach (string n in new[] { "model.layers.0.self_attn.q_proj.bias", "model.layers.2.self_attn.k_norm.weight", "mtp.layers.0.self_attn.v_proj.bias",
                         "model.layers.0.mlp.gate_proj.weight", "mtp.layers.0.mlp.gate.e_score_correction_bias", "mtp.layers.0.mlp.shared_experts.up_proj.weight" })
                Assert.That(state.Keys, Does.Contain(n));
            Assert.That(state["model.layers.1.self_attn.q_proj.weight"].shape, Is.EqualTo(new long[] { 64, 32 }));
            Assert.That(state["model.layers.1.self_attn.k_proj.bias"].shape, Is.EqualTo(new long[] { 32 }));
        }
        string broken = TestUtil.Rewrite(dir, l => l.Where(t => t.Spec.Name != "mtp.layers.0.self_attn.k_proj.bias").ToList());
        var e = Assert.Throws<ModelLoadException>(() => MtpModel.Load(broken, CPU, ScalarType.Float32))!;
        Assert.That(e.Message, Does.Contain("mtp.layers.0.self_attn.k_proj.bias"));
    }

    [Test]
    public void AfterOneBackwardEveryParameterHasANonZeroGradient()
    {
        using var model = MtpModel.Load(TestUtil.Native(Fixture), CPU, ScalarType.Float32);
        using var scope = NewDisposeScope();
        using var batch = new SyntheticTokenSource(256, 1).Next(2, 64);
        model.Loss(batch, 0.1).Total.backward();
        var named = model.TrainableParameters();
        // The fixture's 34 MTP tensors: minus the 2 copies dropped as identical, the 12 per-expert weights stacked into 2,
        // and the router's correction bias (a buffer).
        Assert.That(named.Count(p => p.Name.StartsWith("mtp.", StringComparison.Ordinal)), Is.EqualTo(34 - 2 - 12 + 2 - 1));
        foreach (var (name, p) in named) Assert.That(p.grad is not null && p.grad.abs().max().item<float>() > 0, name);
    }

    [Test]
    public void MainAndMtpLossesFallOnTheSyntheticStream()
    {
        const int n = 40;
        using var t = NewTrainer(new TrainerOptions { Lr = 5e-3, Warmup = 4, TotalSteps = n, Batch = 2, SeqLen = 64 });
        var r = Enumerable.Range(0, n).Select(_ => t.Step()).ToList();
        double First(Func<StepResult, double> f) => r.Take(4).Average(f);
        double Last(Func<StepResult, double> f) => r.TakeLast(4).Average(f);
        TestContext.Out.WriteLine($"main {First(x => x.Loss):F3} -> {Last(x => x.Loss):F3}, mtp {First(x => x.MtpLosses[0]):F3} -> {Last(x => x.MtpLosses[0]):F3}");
        Assert.That(Last(x => x.Loss), Is.LessThan(First(x => x.Loss) - 1.0));
        Assert.That(Last(x => x.MtpLosses[0]), Is.LessThan(First(x => x.MtpLosses[0]) - 0.5));
    }

    [Test]
    public void SaveAndResumeEqualsUninterruptedRun()
    {
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
        string dir = RepoPaths.NewTempDir("glm-resume");
        var split = new List<double[]>();
        using (var t = NewTrainer(o))
        {
            split.AddRange(Losses(Enumerable.Range(0, K).Select(_ => t.Step()).ToList()));
            t.Save(dir);
        }
        using (var t = TrainingCheckpoint.Resume(dir, CPU))
        {
            Assert.That(t.Model.Family, Is.EqualTo(Families.Glm45));
            split.AddRange(Losses(Enumerable.Range(0, K).Select(_ => t.Step()).ToList()));
            Assert.That(Params(t.Model), Is.EqualTo(straightParams));
        }
        Assert.That(split, Is.EqualTo(straight));
    }

    /// <summary>
    /// Trained (F32) -> HF with the BF16 fixture as reference -> training layout: every tensor of the re-imported model is
    /// the trained one rounded to BF16 (the release's dtype), and training moved most of them.
    /// </summary>
    [Test]
    public void ExportAndReimportGiveTheTrainedWeightsInTheReleaseDtype()
    {
        string root = RepoPaths.NewTempDir("glm-export");
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
        int moved = 0;
        foreach (var (name, t) in a)
        {
            var expected = t.dtype == ScalarType.Float32 && !name.EndsWith("e_score_correction_bias", StringComparison.Ordinal)
                ? TestUtil.F(t.to(ScalarType.BFloat16)) : TestUtil.F(t);
            Assert.That(TestUtil.F(b[name]), Is.EqualTo(expected), name);
            if (!TestUtil.F(s0[name]).SequenceEqual(TestUtil.F(b[name]))) moved++;
        }
        Assert.That(moved, Is.GreaterThan(a.Count / 2), "the export carries the training");
    }
}
