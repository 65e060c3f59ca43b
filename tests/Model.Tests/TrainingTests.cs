using System.Text.Json.Nodes;
using Mtp.SafeTensors;
using Mtp.Tests.Shared;
using TorchSharp;
using static TorchSharp.torch;

namespace Mtp.Model.Tests;

public class TrainingTests
{
    static Trainer NewTrainer(int depths, TrainerOptions o, ulong dataSeed = 7, string? ckpt = null)
    {
        string dir = ckpt ?? TestUtil.Tiny(depths);
        var model = DeepSeekV3Model.Load(dir, CPU, ScalarType.Float32);
        var cfg = (JsonObject)JsonNode.Parse(File.ReadAllText(Path.Combine(dir, "config.json")))!;
        return new Trainer(model, new SyntheticTokenSource(256, dataSeed), o, cfg);
    }

    [Test]
    public void AfterOneBackwardEveryMtpParameterHasNonZeroGradient()
    {
        using var model = DeepSeekV3Model.Load(TestUtil.Tiny(2), CPU, ScalarType.Float32);
        using var scope = NewDisposeScope();
        using var batch = new SyntheticTokenSource(256, 1).Next(2, 64);
        model.Loss(batch, 0.1).Total.backward();
        var named = model.TrainableParameters();
        Assert.That(named.Count(p => p.Name.StartsWith("mtp.", StringComparison.Ordinal)), Is.GreaterThan(20));
        foreach (var (name, p) in named)
        {
            Assert.That(p.grad, Is.Not.Null, name);
            Assert.That(p.grad!.abs().max().item<float>(), Is.GreaterThan(0f), name);
        }
    }

    [Test]
    public void MainAndMtpLossesFallOnTheSyntheticStream()
    {
        using var t = NewTrainer(1, new TrainerOptions { Lr = 3e-3, Warmup = 5, TotalSteps = 60, Batch = 2, SeqLen = 64 });
        var r = Enumerable.Range(0, 60).Select(_ => t.Step()).ToList();
        double First(Func<StepResult, double> f) => r.Take(5).Average(f);
        double Last(Func<StepResult, double> f) => r.TakeLast(5).Average(f);
        TestContext.Out.WriteLine($"main {First(x => x.Loss):F3} -> {Last(x => x.Loss):F3}, mtp {First(x => x.MtpLosses[0]):F3} -> {Last(x => x.MtpLosses[0]):F3}");
        Assert.That(Last(x => x.Loss), Is.LessThan(First(x => x.Loss) - 1.0));
        Assert.That(Last(x => x.MtpLosses[0]), Is.LessThan(First(x => x.MtpLosses[0]) - 0.5));
        Assert.That(r.All(x => double.IsFinite(x.GradNorm) && x.GradNorm > 0));
    }

    [Test]
    public void RunsAreBitwiseDeterministic()
    {
        var o = new TrainerOptions { Warmup = 1, TotalSteps = 4, Batch = 2, SeqLen = 32 };
        List<double[]> Run()
        {
            using var t = NewTrainer(2, o);
            return Enumerable.Range(0, 4).Select(_ => t.Step()).Select(s => new[] { s.Loss, s.TotalLoss, s.GradNorm }.Concat(s.MtpLosses).ToArray()).ToList();
        }
        Assert.That(Run(), Is.EqualTo(Run()));
    }

    [Test]
    public void SaveAndResumeEqualsUninterruptedRun()
    {
        const int K = 3;
        var o = new TrainerOptions { Warmup = 2, TotalSteps = 2 * K, Batch = 2, SeqLen = 32 };
        List<double[]> Losses(IEnumerable<StepResult> r) => r.Select(s => new[] { s.Loss, s.TotalLoss, s.GradNorm, s.Lr }.Concat(s.MtpLosses).ToArray()).ToList();
        List<double[]> straight;
        float[] straightParams;
        using (var t = NewTrainer(2, o))
        {
            straight = Losses(Enumerable.Range(0, 2 * K).Select(_ => t.Step()).ToList());
            straightParams = t.Model.TrainableParameters().SelectMany(p => TestUtil.F(p.Param)).ToArray();
        }
        string dir = RepoPaths.NewTempDir("resume");
        var split = new List<double[]>();
        using (var t = NewTrainer(2, o))
        {
            split.AddRange(Losses(Enumerable.Range(0, K).Select(_ => t.Step()).ToList()));
            t.Save(dir);
        }
        Assert.That(TrainingCheckpoint.HasState(dir));
        using (var t = TrainingCheckpoint.Resume(dir, CPU))
        {
            Assert.That(t.StepsDone, Is.EqualTo(K));
            split.AddRange(Losses(Enumerable.Range(0, K).Select(_ => t.Step()).ToList()));
            Assert.That(t.Model.TrainableParameters().SelectMany(p => TestUtil.F(p.Param)).ToArray(), Is.EqualTo(straightParams));
        }
        Assert.That(split, Is.EqualTo(straight));
    }

    [Test]
    public void LiveTensorCountIsStable()
    {
        using var t = NewTrainer(1, new TrainerOptions { TotalSteps = 300, Batch = 1, SeqLen = 8 });
        for (int i = 0; i < 5; i++) t.Step();
        GC.Collect();
        GC.WaitForPendingFinalizers();
        long before = torch.Tensor.TotalCount;
        var sw = System.Diagnostics.Stopwatch.StartNew();
        for (int i = 0; i < 200; i++) t.Step();
        GC.Collect();
        GC.WaitForPendingFinalizers();
        long after = torch.Tensor.TotalCount;
        TestContext.Out.WriteLine($"live tensors {before} -> {after} over 200 steps ({sw.Elapsed.TotalMilliseconds / 200:F1} ms/step)");
        Assert.That(after, Is.LessThanOrEqualTo(before));
    }

    [TestCase(DType.F32)]
    [TestCase(DType.BF16)]
    public void SavedCheckpointReloadsStrictlyWithIdenticalParameters(DType dtype)
    {
        var st = dtype == DType.F32 ? ScalarType.Float32 : ScalarType.BFloat16;
        string src = TestUtil.Tiny(2);
        var model = DeepSeekV3Model.Load(src, CPU, st);
        var cfg = (JsonObject)JsonNode.Parse(File.ReadAllText(Path.Combine(src, "config.json")))!;
        using var t = new Trainer(model, new SyntheticTokenSource(256, 3), new TrainerOptions { Batch = 1, SeqLen = 32 }, cfg);
        t.Step();
        string dir = RepoPaths.NewTempDir("save");
        t.Save(dir, maxShardBytes: 300_000); // several shards + index
        Assert.That(File.Exists(Path.Combine(dir, ShardIndex.FileName)));
        using (var ck = Checkpoint.Open(dir))
        {
            Assert.That(ck.Get("lm_head.weight").Info.DType, Is.EqualTo(dtype));
            Assert.That(ck.Get("mtp.layers.1.mlp.gate.e_score_correction_bias").Info.DType, Is.EqualTo(DType.F32));
        }
        using var re = DeepSeekV3Model.Load(dir, CPU, st);
        var a = model.StateDict();
        var b = re.StateDict();
        Assert.That(b.Keys, Is.EquivalentTo(a.Keys));
        foreach (var k in a.Keys) Assert.That(TestUtil.F(b[k]), Is.EqualTo(TestUtil.F(a[k])), k);
        Assert.That(Directory.GetDirectories(Path.GetDirectoryName(dir)!).Where(d => d.StartsWith(dir + ".", StringComparison.Ordinal)), Is.Empty, "no temp dirs left");
    }

    [Test]
    public void JsonlDocumentsArePackedWithBoundaries()
    {
        string dir = RepoPaths.NewTempDir("data");
        string path = Path.Combine(dir, "docs.jsonl");
        File.WriteAllLines(path, new[] { "[1,2,3]", "[4,5,6,7,8]", "[9,10]" });
        var src = new FileTokenSource(path, 256);
        using var b = src.Next(2, 4);
        Assert.That(b.InputIds.data<long>().ToArray(), Is.EqualTo(new long[] { 1, 2, 3, 4, 5, 6, 7, 8 }));
        Assert.That(b.CuSeqlens, Is.EqualTo(new long[] { 0, 3, 4, 8 }));
        Assert.That(b.Labels.data<long>().ToArray(), Is.EqualTo(new long[] { 2, 3, -100, -100, 6, 7, 8, -100 }));
        using var c = src.Next(1, 4); // wraps around
        Assert.That(c.InputIds.data<long>().ToArray(), Is.EqualTo(new long[] { 9, 10, 1, 2 }));
        Assert.That(c.CuSeqlens, Is.EqualTo(new long[] { 0, 2, 4 }));
        var resumed = (FileTokenSource)TokenSource.FromState(src.SaveState());
        using var d1 = src.Next(1, 4);
        using var d2 = resumed.Next(1, 4);
        Assert.That(d2.InputIds.data<long>().ToArray(), Is.EqualTo(d1.InputIds.data<long>().ToArray()));
        File.WriteAllBytes(Path.Combine(dir, "t.u16"), new byte[] { 1, 0, 2, 0, 0, 1 });
        using var e = new FileTokenSource(Path.Combine(dir, "t.u16"), 300).Next(1, 3);
        Assert.That(e.InputIds.data<long>().ToArray(), Is.EqualTo(new long[] { 1, 2, 256 }));
        Assert.Throws<InvalidDataException>(() => new FileTokenSource(Path.Combine(dir, "t.u16"), 256));
    }
}
