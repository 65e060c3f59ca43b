using System.Text.Json.Nodes;
using Mtp.Adapters;
using Mtp.SafeTensors;
using Mtp.Tests.Shared;
using TorchSharp;
using static TorchSharp.torch;

namespace Mtp.Model.Tests;

public class DeepSeekV4TrainingTests
{
    [Test]
    public void AfterOneBackwardEveryMtpParameterHasNonZeroGradient()
    {
        using var model = DeepSeekV4Model.Load(DeepSeekV4Util.Native(), CPU, ScalarType.Float32);
        using var scope = NewDisposeScope();
        using var batch = new SyntheticTokenSource(256, 1).Next(2, 48);
        model.Loss(batch, 0.1).Total.backward();
        var mtp = model.TrainableParameters().Where(p => p.Name.StartsWith("mtp.", StringComparison.Ordinal)).ToList();
        Assert.That(mtp.Count, Is.GreaterThan(20));
        Assert.That(mtp.Select(p => p.Name), Does.Contain("mtp.layers.0.e_proj.weight").And.Contain("mtp.layers.0.hc_head.hc_fn").And.Contain("mtp.layers.0.self_attn.sinks"));
        foreach (var (name, p) in mtp)
        {
            Assert.That(p.grad, Is.Not.Null, name);
            Assert.That(p.grad!.abs().max().item<float>(), Is.GreaterThan(0f), name);
        }
        // Main layers too (the indexer only selects, and the ratio-128 compressor needs 128-token sequences).
        foreach (var (name, p) in model.TrainableParameters().Where(p => p.Name.StartsWith("model.", StringComparison.Ordinal)
            && !p.Name.Contains(".self_attn.compressor.indexer.") && !p.Name.StartsWith("model.layers.2.self_attn.compressor.", StringComparison.Ordinal)))
            Assert.That(p.grad is not null && p.grad.abs().max().item<float>() > 0f, name);
    }

    [Test]
    public void LegacyFusedEhProjEqualsSeparateProjections()
    {
        string dir = DeepSeekV4Util.Native("deepseek-v4-legacy-mtp");
        using var legacy = (DeepSeekV4Model)MtpModel.Load(dir, CPU, ScalarType.Float32);
        Assert.That(legacy.StateDict().Keys, Does.Contain("mtp.layers.0.eh_proj.weight").And.Not.Contain("mtp.layers.0.hc_head.hc_fn"));
        using var split = new DeepSeekV4Model(legacy.Config, ScalarType.Float32, CPU, new[] { new V4DepthLayout() });
        var src = legacy.StateDict();
        long h = legacy.Config.HiddenSize;
        using (no_grad())
            foreach (var (name, t) in split.StateDict())
            {
                Tensor from = name switch
                {
                    "mtp.layers.0.e_proj.weight" => src["mtp.layers.0.eh_proj.weight"].narrow(1, 0, h),
                    "mtp.layers.0.h_proj.weight" => src["mtp.layers.0.eh_proj.weight"].narrow(1, h, h),
                    _ when name.StartsWith("mtp.layers.0.hc_head.", StringComparison.Ordinal) => src["model.hc_head." + name[21..]],
                    _ => src[name],
                };
                t.copy_(from);
            }
        using var batch = new SyntheticTokenSource(256, 4).Next(2, 32);
        using var scope = NewDisposeScope();
        var a = legacy.Forward(batch);
        var b = split.Forward(batch);
        Assert.That(TestUtil.F(a.MainLogits), Is.EqualTo(TestUtil.F(b.MainLogits)));
        Assert.That((a.MtpLogits[0] - b.MtpLogits[0]).abs().max().item<float>(), Is.LessThan(1e-5f));
        var l = legacy.Loss(batch, 0.1);
        l.Total.backward();
        Assert.That(legacy.TrainableParameters().Single(p => p.Name == "mtp.layers.0.eh_proj.weight").Param.grad!.abs().max().item<float>(), Is.GreaterThan(0f));
    }

    [Test]
    public void MainAndMtpLossesFallOnTheSyntheticStream()
    {
        using var t = DeepSeekV4Util.NewTrainer(new TrainerOptions { Lr = 1e-2, Warmup = 3, TotalSteps = 40, Batch = 2, SeqLen = 32 });
        var r = Enumerable.Range(0, 40).Select(_ => t.Step()).ToList();
        double First(Func<StepResult, double> f) => r.Take(5).Average(f);
        double Last(Func<StepResult, double> f) => r.TakeLast(5).Average(f);
        TestContext.Out.WriteLine($"main {First(x => x.Loss):F3} -> {Last(x => x.Loss):F3}, mtp {First(x => x.MtpLosses[0]):F3} -> {Last(x => x.MtpLosses[0]):F3}, "
            + $"{r.Skip(1).Average(x => x.Seconds) * 1000:F1} ms/step (B 2, S 32, F32, 1 thread)");
        Assert.That(Last(x => x.Loss), Is.LessThan(First(x => x.Loss) - 0.4));
        Assert.That(Last(x => x.MtpLosses[0]), Is.LessThan(First(x => x.MtpLosses[0]) - 0.4));
        Assert.That(r.All(x => double.IsFinite(x.GradNorm) && x.GradNorm > 0));
    }

    [Test]
    public void SaveAndResumeEqualsUninterruptedRun()
    {
        const int K = 2;
        var o = new TrainerOptions { Warmup = 1, TotalSteps = 2 * K, Batch = 2, SeqLen = 24 };
        List<double[]> Losses(IEnumerable<StepResult> r) => r.Select(s => new[] { s.Loss, s.TotalLoss, s.GradNorm, s.Lr }.Concat(s.MtpLosses).ToArray()).ToList();
        List<double[]> straight;
        Dictionary<string, float[]> straightState;
        using (var t = DeepSeekV4Util.NewTrainer(o))
        {
            straight = Losses(Enumerable.Range(0, 2 * K).Select(_ => t.Step()).ToList());
            straightState = t.Model.StateDict().ToDictionary(kv => kv.Key, kv => TestUtil.F(kv.Value.to(ScalarType.Float32)));
        }
        string dir = RepoPaths.NewTempDir("v4-resume");
        var split = new List<double[]>();
        using (var t = DeepSeekV4Util.NewTrainer(o))
        {
            split.AddRange(Losses(Enumerable.Range(0, K).Select(_ => t.Step()).ToList()));
            t.Save(dir);
        }
        using (var ck = Checkpoint.Open(dir))
        {
            Assert.That(ck.Get("model.layers.0.mlp.gate.tid2eid").Info.DType, Is.EqualTo(DType.I32));
            Assert.That(ck.Get("model.layers.1.attn_hc.fn").Info.DType, Is.EqualTo(DType.F32));
        }
        using (var t = TrainingCheckpoint.Resume(dir, CPU))
        {
            Assert.That(t.Model, Is.InstanceOf<DeepSeekV4Model>());
            split.AddRange(Losses(Enumerable.Range(0, K).Select(_ => t.Step()).ToList()));
            foreach (var (name, v) in t.Model.StateDict())
                Assert.That(TestUtil.F(v.to(ScalarType.Float32)), Is.EqualTo(straightState[name]), name);
        }
        Assert.That(split, Is.EqualTo(straight));
    }

    [Test]
    public void ExportReimportEqualsTheRedequantizedExportIncludingFp4Experts()
    {
        string fixture = Path.Combine(RepoPaths.Fixtures, "deepseek-v4-flash");
        string root = RepoPaths.NewTempDir("v4-export");
        string trained = Path.Combine(root, "trained"), hf = Path.Combine(root, "hf"), back = Path.Combine(root, "back");
        using (var t = DeepSeekV4Util.NewTrainer(new TrainerOptions { Lr = 1e-2, Warmup = 1, TotalSteps = 2, Batch = 1, SeqLen = 24 }))
        {
            t.Step(); t.Step();
            t.Save(trained);
        }
        Converter.ToHf(trained, hf, new ConvertOptions { Reference = fixture });
        Converter.ToNative(hf, back, new ConvertOptions());
        using var re = DeepSeekV4Model.Load(back, CPU, ScalarType.Float32);
        using var tr = DeepSeekV4Model.Load(trained, CPU, ScalarType.Float32);
        var decoded = DecodeHf(hf, re.Config);
        var state = re.StateDict();
        Assert.That(decoded.Keys, Is.EquivalentTo(state.Keys));
        int fp4 = 0;
        foreach (var (name, t) in state)
        {
            Assert.That(TestUtil.F(t.to(ScalarType.Float32)), Is.EqualTo(decoded[name].Values), name);
            if (decoded[name].Fp4) fp4++;
        }
        Assert.That(fp4, Is.EqualTo(8), "gate_up_proj + down_proj of 3 layers and the MTP depth come from FP4");
        // The export carries the training: the experts moved, within FP4 error of the trained values.
        using var fx = Checkpoint.Open(fixture);
        using var hfck = Checkpoint.Open(hf);
        Assert.That(hfck.Get("layers.1.ffn.experts.2.w1.weight").File.GetBytes(hfck.Get("layers.1.ffn.experts.2.w1.weight").Info).ToArray(),
            Is.Not.EqualTo(fx.Get("layers.1.ffn.experts.2.w1.weight").File.GetBytes(fx.Get("layers.1.ffn.experts.2.w1.weight").Info).ToArray()));
        var trained0 = tr.StateDict();
        foreach (var name in new[] { "model.layers.1.mlp.experts.gate_up_proj", "mtp.layers.0.mlp.experts.down_proj" })
        {
            var diff = (trained0[name] - state[name]).abs().max().item<float>();
            var amax = trained0[name].abs().max().item<float>();
            Assert.That(diff, Is.LessThanOrEqualTo(amax / 2), name);
        }
        // Step-0 loss of the re-imported model equals the loss on the exported weights (decoded independently).
        using (no_grad())
            foreach (var (name, t) in tr.StateDict()) t.copy_(tensor(decoded[name].Values).view(t.shape).to(t.dtype));
        using var batch = new SyntheticTokenSource(256, 11).Next(2, 32);
        using var scope = NewDisposeScope();
        var a = re.Loss(batch, 0.1);
        var b = tr.Loss(batch, 0.1);
        Assert.That(a.Total.item<float>(), Is.EqualTo(b.Total.item<float>()));
        Assert.That(a.Mtp[0].item<float>(), Is.EqualTo(b.Mtp[0].item<float>()));
    }

    /// <summary>
    /// Decodes an HF DeepSeek-V4 checkpoint into training-layout names with a direct decoder (E4M3 / E2M1 code
    /// tables, E8M0 scales; 128x128 FP8 blocks, 32-column FP4 groups, low nibble first), independent of the adapter.
    /// </summary>
    static Dictionary<string, (float[] Values, bool Fp4)> DecodeHf(string dir, DeepSeekV4Config c)
    {
        using var ck = Checkpoint.Open(dir);
        var r = new Dictionary<string, (float[], bool)>(StringComparer.Ordinal);
        float[] Read(string name, out long[] shape, out bool fp4)
        {
            var loc = ck.Get(name);
            shape = loc.Info.Shape;
            fp4 = false;
            var bytes = loc.File.GetBytes(loc.Info).ToArray();
            string scaleName = name[..^"weight".Length] + "scale";
            if (loc.Info.DType == DType.I32)
                return System.Runtime.InteropServices.MemoryMarshal.Cast<byte, int>(bytes).ToArray().Select(x => (float)x).ToArray();
            if (!ck.Contains(scaleName)) return CheckpointIO.ReadFloat(bytes, loc.Info);
            var sl = ck.Get(scaleName);
            var sc = sl.File.GetBytes(sl.Info).ToArray();
            long rows = shape[0];
            if (loc.Info.DType == DType.I8 || loc.Info.DType == DType.U8)
            {
                fp4 = true;
                long cols = shape[1] * 2;
                var v = new float[rows * cols];
                for (long i = 0; i < rows; i++)
                    for (long j = 0; j < cols; j++)
                    {
                        byte p = bytes[i * shape[1] + j / 2];
                        int nib = (j % 2 == 0) ? p & 15 : p >> 4;
                        v[i * cols + j] = Mtp.Quant.Fp4E2M1.ToFloat(nib) * Mtp.Quant.E8M0.ToFloat(sc[i * sl.Info.Shape[1] + j / 32]);
                    }
                shape = new[] { rows, cols };
                return v;
            }
            long n = shape[1];
            var f = new float[rows * n];
            for (long i = 0; i < rows; i++)
                for (long j = 0; j < n; j++)
                    f[i * n + j] = Mtp.Quant.Fp8E4M3.ToFloat(bytes[i * n + j]) * Mtp.Quant.E8M0.ToFloat(sc[(i / 128) * sl.Info.Shape[1] + j / 128]);
            return f;
        }
        // Names are built as the release's under model. / mtp.layers.{k}. (the former training names), then renamed with the
        // former-names table; that table is checked against transformers' own names by TransformersParityTests.
        void Put(string native, string hfName) { var v = Read(hfName, out _, out bool q); r[DeepSeekV4FormerNames.Table.Current(native) ?? native] = (v, q); }
        Put("model.embed_tokens.weight", "embed.weight");
        Put("model.norm.weight", "norm.weight");
        Put("lm_head.weight", "head.weight");
        foreach (var p in new[] { "fn", "base", "scale" }) Put($"model.hc_head.{p}", $"hc_head_{p}");
        var blocks = Enumerable.Range(0, c.NumHiddenLayers).Select(i => ($"layers.{i}.", $"model.layers.{i}."))
            .Concat(Enumerable.Range(0, c.NumNextnPredictLayers).Select(k => ($"mtp.{k}.", $"mtp.layers.{k}."))).ToList();
        foreach (var (hp, np) in blocks)
        {
            foreach (var t in ck.Tensors.Select(t => t.Name).Where(n => n.StartsWith(hp, StringComparison.Ordinal) && !n.EndsWith(".scale", StringComparison.Ordinal) || n.StartsWith(hp + "hc_", StringComparison.Ordinal) && n.EndsWith("_scale", StringComparison.Ordinal)))
            {
                string rest = t[hp.Length..];
                if (rest.StartsWith("ffn.experts.", StringComparison.Ordinal)) continue;
                string native = rest switch
                {
                    "ffn.shared_experts.w1.weight" => "mlp.shared_experts.gate_proj.weight",
                    "ffn.shared_experts.w3.weight" => "mlp.shared_experts.up_proj.weight",
                    "ffn.shared_experts.w2.weight" => "mlp.shared_experts.down_proj.weight",
                    "norm.weight" => "final_layernorm.weight",
                    _ when rest.StartsWith("hc_head_", StringComparison.Ordinal) => "hc_head." + rest[8..],
                    _ when rest.StartsWith("ffn.gate.", StringComparison.Ordinal) => "mlp.gate." + rest[9..],
                    _ => rest,
                };
                Put(np + native, t);
            }
            var gu = new List<float>();
            var down = new List<float>();
            for (int e = 0; e < c.NRoutedExperts; e++)
            {
                gu.AddRange(Read($"{hp}ffn.experts.{e}.w1.weight", out _, out _));
                gu.AddRange(Read($"{hp}ffn.experts.{e}.w3.weight", out _, out _));
                down.AddRange(Read($"{hp}ffn.experts.{e}.w2.weight", out _, out _));
            }
            r[np + "mlp.experts.gate_up_proj"] = (gu.ToArray(), true);
            r[np + "mlp.experts.down_proj"] = (down.ToArray(), true);
        }
        return r;
    }
}
