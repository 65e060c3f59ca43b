using System.Diagnostics;
using System.Globalization;
using System.Text.Json.Nodes;
using Mtp.Model;
using Mtp.SafeTensors;
using TorchSharp;

namespace Mtp.Cli.Commands;

public static partial class TrainCommand
{
    // How many parameters a run trains and freezes, and under which --train mode.
    sealed record TrainCounts(long Trained, long Frozen, string Mode);

    static int Run(TrainRequest q)
    {
        if (q.SaveAsHf && q.OutDir is null) throw new CliException(ExitCodes.Usage, "--save-as hf: give --out DIR (the folder the HF checkpoint is written to)");
        // --steps, --batch and --seq-len ranges are checked while parsing (OptionChecks.AtLeast).
        var device = TorchDevices.Start("train", q.Checkpoint, q.DataPath, q.Threads, q.Device, q.Seed);
        using Trainer trainer = q.ResumeDir is not null ? Resumed(q, device) : Fresh(q, device);
        string? outDir = q.OutDir;
        var outRules = q.OutRules;
        // The output is checked (replace rules, free space) and its temporary created before training, not after it.
        bool ownResume = outDir is not null && q.ResumeDir is not null
            && Path.GetFullPath(outDir).TrimEnd('/') == Path.GetFullPath(q.ResumeDir).TrimEnd('/');
        if (outDir is not null) outRules = outRules with { Force = outRules.Force || ownResume, CarriedNames = TopLevelFiles(q.ResumeDir ?? q.Checkpoint) };
        if (q.SaveAsHf) OutputFolder.CheckReplaceable(outDir!, outRules); // before training; the export checks again when it writes
        using OutputTransaction? txn = outDir is null || q.SaveAsHf ? null : TrainingCheckpoint.Begin(trainer, outDir, outRules);
        var counts = Counts(trainer);
        var o = trainer.Options;
        CliOutput.Current.Info($"training {trainer.Model.Family}: {Units.Count(trainer.Model.NumHiddenLayers, "layer")} + {Units.Count(trainer.Model.MtpDepthCount, "MTP depth")}, " +
            $"{counts.Trained:N0} parameters trained, {counts.Frozen:N0} frozen (--train {counts.Mode}), {trainer.Model.DType} on {device}, batch {o.Batch}x{o.SeqLen}");
        var wall = Stopwatch.StartNew();
        var steps = new TrainSteps(trainer, q.Json);
        if (txn is null) steps.Run(q.Steps, outRules.Cancel);
        else txn.Run(tmp => { steps.Run(q.Steps, outRules.Cancel); TrainingCheckpoint.WriteInto(trainer, tmp, txn.Target); return 0; });
        // An HF source is its own reference; a training-layout one exports from the source its conversion.json records.
        if (q.SaveAsHf) TrainExport.SaveAsHf(trainer, outDir!, trainer.Model.SourceLineage is null ? null : q.Checkpoint, outRules);
        Report(q, trainer, device, steps, wall.Elapsed, counts);
        return 0;
    }

    static Trainer Resumed(TrainRequest q, torch.Device device)
    {
        var trainer = TrainResume.Resume(q.Checkpoint, q.ResumeDir!, device, q.Given, q.Steps);
        CliOutput.Current.Info($"resumed {q.ResumeDir} at step {trainer.StepsDone} (options from the saved state)");
        return trainer;
    }

    static Trainer Fresh(TrainRequest q, torch.Device device)
    {
        var options = q.Options;
        TrainResume.CheckHorizon(0, q.Steps, options.TotalSteps, q.Given.TotalSteps is not null);
        if (options.Train == TrainMode.Mtp && options.MtpLossScale == 0)
            throw new CliException(ExitCodes.Usage, "--train mtp with --mtp-loss-scale 0: the MTP depths would get no gradient (the main loss does not reach them); give a scale > 0");
        var dtype = CheckpointIO.ParseDType(q.DType);
        var model = MtpModel.Load(q.Checkpoint, device, dtype);
        if (options.Train == TrainMode.Mtp && model.MtpDepthCount == 0)
        {
            string family = model.Family;
            model.Dispose();
            throw new CliException(ExitCodes.Usage, $"{q.Checkpoint}: --train mtp, but this {family} checkpoint has no MTP depths to train", q.Checkpoint);
        }
        var config = model.SourceConfig ?? throw new CliException(ExitCodes.Usage, $"{q.Checkpoint}: no config.json", q.Checkpoint);
        int vocab = model.VocabSize;
        TokenSource source = q.DataPath is null ? new SyntheticTokenSource(vocab, (ulong)q.Seed) : new FileTokenSource(q.DataPath, vocab);
        return new Trainer(model, source, options, config) { SourceDir = q.Checkpoint, StartCheckpoint = Path.GetFullPath(q.Checkpoint).TrimEnd('/'), Seed = q.Seed };
    }

    static TrainCounts Counts(Trainer trainer)
    {
        long trained = trainer.Model.TrainableParameters().Sum(p => p.Param.numel());
        long frozen = trainer.Model.parameters().Sum(p => p.numel()) - trained;
        return new TrainCounts(trained, frozen, TrainModeJsonConverter.Name(trainer.Options.Train));
    }

    // The summary line (or --json document) once the steps are done and the output saved.
    static void Report(TrainRequest q, Trainer trainer, torch.Device device, TrainSteps steps, TimeSpan elapsed, TrainCounts counts)
    {
        var o = trainer.Options;
        var output = CliOutput.Current;
        var times = steps.Times;
        var summary = new JsonObject
        {
            ["steps"] = times.Count, ["seconds"] = Math.Round(elapsed.TotalSeconds, 3),
            ["train"] = counts.Mode, ["trained_parameters"] = counts.Trained, ["frozen_parameters"] = counts.Frozen,
        };
        if (times.Count > 0)
        {
            var steady = times.Count > 1 ? times.Skip(1).ToList() : times;
            double mean = steady.Average();
            summary["mean_step_ms"] = Math.Round(mean * 1000, 3);
            summary["tokens_per_s"] = Math.Round(o.Batch * o.SeqLen / mean, 1);
            summary["first_step_excluded"] = times.Count > 1;
            if (!q.Json)
                output.Result(string.Format(CultureInfo.InvariantCulture, "{0} in {1:F2} s; mean step {2:F1} ms{4}, {3:F0} tokens/s",
                    Units.Count(times.Count, "step"), elapsed.TotalSeconds, mean * 1000, o.Batch * o.SeqLen / mean, times.Count > 1 ? " (first step excluded)" : ""));
        }
        if (q.Json)
            CliOutput.Document(new JsonObject
            {
                ["ok"] = true, ["family"] = trainer.Model.Family, ["device"] = device.ToString(), ["dtype"] = trainer.Model.DType.ToString(),
                ["step"] = trainer.StepsDone, ["steps"] = steps.Json, ["summary"] = summary, ["saved"] = q.OutDir,
            });
        else if (q.OutDir is not null) output.Result($"saved {q.OutDir} (step {trainer.StepsDone}{(q.SaveAsHf ? ", Hugging Face layout" : "")})");
    }

    static string[] TopLevelFiles(string dir) => Directory.Exists(dir) ? Directory.GetFileSystemEntries(dir).Select(f => Path.GetFileName(f)!).ToArray() : [];
}
