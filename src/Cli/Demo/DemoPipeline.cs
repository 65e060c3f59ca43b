using System.Diagnostics;
using System.Text.Json.Nodes;
using Mtp.Adapters;
using Mtp.Adapters.Synthetic;
using Mtp.Cli.Inspect;
using Mtp.Model;
using Mtp.SafeTensors;
using static TorchSharp.torch;

namespace Mtp.Cli.Demo;

/// <summary>One stage of the demo and what it showed.</summary>
/// <param name="Name">Stage name.</param>
/// <param name="Status">ok, failed, or missing (the stage's component does not exist yet for this family).</param>
/// <param name="Detail">What it did, in one line.</param>
/// <param name="Seconds">Wall time.</param>
public sealed record DemoStage(string Name, string Status, string Detail, double Seconds);

/// <summary>
/// The whole pipeline on a small synthetic checkpoint: synthesize (real HF layout and quantization),
/// inspect, convert to the training layout, train with the MTP loss, export back to HF with the
/// original as reference, and verify both round trips. A stage whose component is missing for the
/// family is reported as missing, never faked.
/// </summary>
public sealed class DemoPipeline(string family, string work, int steps, Action<string> log)
{
    readonly List<DemoStage> _stages = new();

    /// <summary>The stages run so far.</summary>
    public IReadOnlyList<DemoStage> Stages => _stages;

    string Hf => Path.Combine(work, "hf");
    string Native => Path.Combine(work, "native");
    string Back => Path.Combine(work, "hf-roundtrip");
    string Trained => Path.Combine(work, "trained");
    string Export => Path.Combine(work, "hf-trained");
    string Reimported => Path.Combine(work, "native-reimported");

    /// <summary>Runs every stage; returns true when none failed.</summary>
    public bool Run()
    {
        Directory.CreateDirectory(work);
        ConversionStages();
        string[] trainingStages = { "train", "export trained", "re-import trained" };
        if (_stages.Any(s => s.Status == "failed"))
        {
            // There may be no checkpoint to ask for a model: the later stages are listed as skipped (see Stage).
            foreach (string s in trainingStages) Stage(s, () => "");
            return false;
        }
        if (!HasModel())
        {
            string reason = $"no TorchSharp model for {family} yet (models: {string.Join(", ", ModelRegistry.ModelTypes)})";
            foreach (string s in trainingStages) _stages.Add(new DemoStage(s, "missing", reason, 0));
            log($"train: missing: {reason}");
            return _stages.All(s => s.Status != "failed");
        }
        Stage("train", Train);
        Stage("export trained", ExportTrained);
        Stage("re-import trained", Reimport);
        return _stages.All(s => s.Status != "failed");
    }

    // Set by the train and export stages, read by the re-import stage.
    double _trainedLoss = double.NaN;
    string _exportScheme = "unquantized";

    // synthesize, inspect, convert, round trip: what needs no model.
    void ConversionStages()
    {
        Stage("synthesize", () =>
        {
            SynthPlan plan = SynthModel.For(family).Build();
            var r = SynthWriter.WriteCheckpoint(plan, Hf, seed: 1, maxShardBytes: 512 * 1024, new OutputRules { Force = true });
            return $"{r.Tensors} tensors, {Units.Bytes(r.Bytes)} in {r.Shards} shards ({family}, HF layout) -> {Hf}";
        });
        Stage("inspect", () =>
        {
            CheckpointReport rep = CheckpointInspector.Inspect(Hf);
            if (rep.Problems.Count > 0) throw new InvalidDataException(rep.Problems[0]);
            return $"{rep.Family}: {string.Join("; ", rep.Quantization)}; MTP depth {rep.MtpDepth} ({rep.MtpTensorCount} tensors at {string.Join(", ", rep.MtpLocations)}); experts {rep.ExpertLayout}";
        });
        Stage("convert to training layout", () =>
        {
            var r = Converter.ToNative(Hf, Native, new ConvertOptions { DType = DType.F32, Force = true });
            return $"{r.TensorsWritten} tensors, {Units.Bytes(r.BytesWritten)}, {r.Dropped.Count} dropped with reasons -> {Native}";
        });
        Stage("round trip untrained", () =>
        {
            Converter.ToHf(Native, Back, new ConvertOptions { Reference = Hf, Force = true });
            var v = Verifier.Compare(Hf, Back);
            if (!v.Identical) throw new InvalidDataException($"HF -> native -> HF differs: {v.Differences.Count} tensors, first {v.Differences.FirstOrDefault()?.Name}");
            return $"HF -> native -> HF byte-identical ({v.Compared} tensors, scales included)";
        });
    }

    string Train()
    {
        using var model = MtpModel.Load(Native, CPU, ScalarType.Float32);
        var cfg = Checkpoint.ReadConfig(Native) ?? throw new InvalidOperationException($"{Native}: no config.json after the conversion");
        var options = new TrainerOptions { Lr = 1e-2, Warmup = Math.Max(1, steps / 10), TotalSteps = steps, Batch = 2, SeqLen = 64 };
        using var trainer = new Trainer(model, new SyntheticTokenSource(model.VocabSize, 1), options, cfg) { SourceDir = Native };
        StepResult? first = null, last = null;
        for (int i = 0; i < steps; i++)
        {
            last = trainer.Step();
            first ??= last;
            if (i % Math.Max(1, steps / 10) == 0 || i == steps - 1)
                log($"step {last.Step,3}: main loss {last.Loss:F3}  MTP losses [{string.Join(", ", last.MtpLosses.Select(x => x.ToString("F3")))}]  {last.TokensPerSecond:F0} tok/s");
        }
        trainer.Save(Trained);
        _trainedLoss = EvalLoss(Trained);
        return steps == 0 ? "0 steps" :
            $"{Units.Count(steps, "step")}: main {first!.Loss:F3} -> {last!.Loss:F3}, MTP {string.Join("/", first.MtpLosses.Select(x => x.ToString("F3")))} -> {string.Join("/", last.MtpLosses.Select(x => x.ToString("F3")))} -> {Trained}";
    }

    string ExportTrained()
    {
        var r = Converter.ToHf(Trained, Export, new ConvertOptions { Reference = Hf, Force = true });
        var quantized = QuantizedWeights(Export);
        _exportScheme = quantized.Scheme;
        return ExportDetail(r.TensorsWritten, quantized, r.Requantized.Count, r.Requantized.Sum(x => x.ChangedBlocks), Export);
    }

    string Reimport()
    {
        Converter.ToNative(Export, Reimported, new ConvertOptions { DType = DType.F32, Force = true });
        double reimported = EvalLoss(Reimported);
        if (!double.IsFinite(reimported) || Math.Abs(reimported - _trainedLoss) > 0.1)
            throw new InvalidDataException($"loss after export/re-import {reimported:F4} vs trained {_trainedLoss:F4}");
        return $"loss on a fixed batch: trained {_trainedLoss:F4}, after {_exportScheme} export and re-import {reimported:F4}";
    }

    /// <summary>The export stage's line: what was re-quantized, and to what, only when the source is quantized at all.</summary>
    public static string ExportDetail(int tensors, (int Count, string Scheme) quantized, int requantized, int newBlocks, string dir) =>
        quantized.Count == 0
            ? $"{Units.Count(tensors, "tensor")} in the reference's dtypes (the source is not quantized) -> {dir}"
            : $"{Units.Count(tensors, "tensor")}, {quantized.Count} of them weights re-quantized to {quantized.Scheme} with the reference's scales " +
              $"({Units.Count(requantized, "weight")} needed {newBlocks} new block scales) -> {dir}";

    /// <summary>How many weights of the checkpoint in <paramref name="dir"/> are quantized, and in which formats ("FP8", "FP8 + FP4", or "unquantized").</summary>
    public static (int Count, string Scheme) QuantizedWeights(string dir)
    {
        using Checkpoint ck = Checkpoint.Open(dir);
        int fp8 = ck.Tensors.Count(t => t.Info.DType == DType.F8_E4M3), fp4 = ck.Tensors.Count(t => t.Info.DType is DType.I8 or DType.F4);
        var parts = new List<string>();
        if (fp8 > 0) parts.Add("FP8");
        if (fp4 > 0) parts.Add("FP4");
        return (fp8 + fp4, parts.Count == 0 ? "unquantized" : string.Join(" + ", parts));
    }

    bool HasModel()
    {
        var cfg = Checkpoint.ReadConfig(Hf);
        string? top = cfg?["model_type"]?.GetValue<string>(), text = (cfg?["text_config"] as JsonObject)?["model_type"]?.GetValue<string>();
        return ModelRegistry.ModelTypes.Contains(top ?? "") || ModelRegistry.ModelTypes.Contains(text ?? "");
    }

    static double EvalLoss(string dir)
    {
        using var model = MtpModel.Load(dir, CPU, ScalarType.Float32);
        using var scope = NewDisposeScope();
        using var batch = new SyntheticTokenSource(model.VocabSize, 99).Next(2, 64);
        using var _ = no_grad();
        return model.Loss(batch, 0.1).Total.item<float>();
    }

    void Stage(string name, Func<string> body)
    {
        if (_stages.Any(s => s.Status == "failed"))
        {
            _stages.Add(new DemoStage(name, "skipped", "an earlier stage failed", 0));
            return;
        }
        log($"{name} ...");
        var sw = Stopwatch.StartNew();
        try
        {
            string detail = body();
            _stages.Add(new DemoStage(name, "ok", detail, sw.Elapsed.TotalSeconds));
            log($"{name}: {detail}");
        }
        catch (Exception e)
        {
            string message = ErrorCategories.MessageOf(e);
            _stages.Add(new DemoStage(name, "failed", message.Replace('\n', ' '), sw.Elapsed.TotalSeconds));
            log($"{name}: FAILED: {message}");
        }
    }
}
