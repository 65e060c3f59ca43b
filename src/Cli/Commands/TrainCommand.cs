using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using Mtp.Model;
using Mtp.SafeTensors;
using TorchSharp;

namespace Mtp.Cli.Commands;

/// <summary><c>mtp train</c>: trains a checkpoint of any family (training layout or HF, loaded in memory) with its MTP depths.</summary>
public static class TrainCommand
{
    /// <summary>Builds the command.</summary>
    public static Command Create()
    {
        var ckpt = new Argument<string>("checkpoint") { Description = "Checkpoint directory: the training layout, or a Hugging Face checkpoint (converted in memory in the training dtype, FP8/FP4 dequantized as convert does)." };
        var steps = new Option<int>("--steps") { Description = "Optimizer steps to run in this invocation.", Required = true }.AtLeast(0);
        var outDir = new Option<string?>("--out") { Description = "Write the trained checkpoint (weights in the training dtype, sharded with an index) plus training_state/ (optimizer, schedule, data position) here, atomically." };
        var device = new Option<string>("--device") { Description = "cpu or cuda[:N].", DefaultValueFactory = _ => "cpu" }.Device();
        var dtype = new Option<string>("--dtype") { Description = "Training dtype: bf16 or f32.", DefaultValueFactory = _ => "bf16" }.OneOfIgnoringCase("bf16|bfloat16", "f32|fp32|float32");
        var lr = new Option<double>("--lr") { Description = "Peak learning rate (AdamW, betas 0.9/0.95, weight decay 0.01 on matrices, grad clip 1.0).", DefaultValueFactory = _ => 1e-3 }.AtLeast(0.0);
        var batch = new Option<int>("--batch") { Description = "Rows per batch.", DefaultValueFactory = _ => 2 }.AtLeast(1);
        var seqLen = new Option<int>("--seq-len") { Description = "Tokens per row (documents are packed, with cu_seqlens).", DefaultValueFactory = _ => 64 }.AtLeast(2);
        var data = new Option<string?>("--data") { Description = "Token ids: .bin/.u16 (uint16), .i32 (int32) or .jsonl (one list of ids per document). Default: a learnable synthetic stream." };
        var seed = new Option<long>("--seed") { Description = "Seed of the synthetic data and torch.", DefaultValueFactory = _ => 0 };
        var mtpScale = new Option<double>("--mtp-loss-scale") { Description = "lambda in loss = main + lambda/D * sum of the D depths' losses.", DefaultValueFactory = _ => 0.1 }.AtLeast(0.0);
        var warmup = new Option<int>("--warmup") { Description = "Linear warmup steps before the cosine decay.", DefaultValueFactory = _ => 0 }.AtLeast(0);
        var total = new Option<int?>("--total-steps") { Description = "Schedule horizon: the cosine reaches 0.1·lr here. Default: --steps. Set it when you plan to resume, so a split run follows one schedule; with --resume it may stretch the saved schedule. A run past its horizon is refused." }.AtLeast(1);
        var resume = new Option<string?>("--resume") { Description = "Continue exactly from a directory written by --out: its weights, optimizer moments, step, schedule, options (lr, warmup, horizon, batch, seq-len, mtp-loss-scale, train, dtype, seed, data file) and data position are used; CHECKPOINT must be that folder (or the run's first checkpoint), and a flag that differs from the saved value is refused (only --total-steps may change). E.g. mtp train OUT --resume OUT --steps K --out OUT." };
        var train = new Option<string>("--train") { Description = "What to train: all (every parameter) or mtp (only the MTP depths: the main model is frozen, gets no gradients and no optimizer state, and its forward runs without autograd; the main loss is still reported, and a save changes only MTP tensors).", DefaultValueFactory = _ => "all" }.OneOfIgnoringCase("all", "mtp");
        var threads = new Option<int>("--threads") { Description = "CPU intra-op threads (0: libtorch's default, one per core). Default 1: small models step faster without OpenMP contention on shared machines, and runs stay bitwise reproducible.", DefaultValueFactory = _ => 1 }.AtLeast(0);
        var force = new Option<bool>("--force") { Description = OutputFlags.ForceHelp + " (not needed when --out is the --resume directory)" };
        var forceAny = new Option<bool>("--force-any") { Description = OutputFlags.ForceAnyHelp };
        var noSpaceCheck = new Option<bool>("--no-space-check") { Description = OutputFlags.NoSpaceCheckHelp };
        var saveAs = new Option<string>("--save-as")
        {
            Description = "Layout of --out: native (the training layout plus training_state/ to resume from) or hf (the source's Hugging Face format, " +
                "re-quantized as convert --to hf does, with an HF source as the reference so unchanged weights return byte for byte; no training_state).",
            DefaultValueFactory = _ => "native",
        }.OneOfIgnoringCase("native", "hf");
        var json = new Option<bool>("--json") { Description = "Print one JSON object on stdout at the end: every step (step, loss, mtp_losses, grad_norm, tokens_per_s, total_loss, lr), the summary and the saved folder." };
        var cmd = new Command("train", "Train a checkpoint of any family (DeepSeek-V3/V4, Qwen3.5/Qwen3-Next), in the training layout or straight from its Hugging Face release, with its MTP depths (main + MTP loss, or the depths alone with --train mtp) and optionally save it.")
        {
            ckpt, steps, outDir, saveAs, device, dtype, lr, batch, seqLen, data, seed, mtpScale, warmup, total, resume, train, threads, json, force, forceAny, noSpaceCheck,
        };
        cmd.SetAction(pr => CommandRunner.Run(() =>
                Run(pr.GetValue(ckpt)!, pr.GetValue(steps), pr.GetValue(outDir), pr.GetValue(device)!, pr.GetValue(dtype)!,
                    new TrainerOptions
                    {
                        Lr = pr.GetValue(lr), Batch = pr.GetValue(batch), SeqLen = pr.GetValue(seqLen), MtpLossScale = pr.GetValue(mtpScale),
                        Warmup = pr.GetValue(warmup), TotalSteps = pr.GetValue(total) ?? pr.GetValue(steps),
                        Train = TrainModeJsonConverter.Parse(pr.GetValue(train)!) ?? TrainMode.All,
                    },
                    pr.GetValue(data), pr.GetValue(seed), pr.GetValue(resume), pr.GetValue(threads), pr.GetValue(json),
                    new TrainFlags(Given(pr, lr), Given(pr, batch), Given(pr, seqLen), pr.GetValue(data), Given(pr, seed), Given(pr, mtpScale), Given(pr, warmup),
                        pr.GetValue(total), pr.GetResult(dtype) is { Implicit: false } ? pr.GetValue(dtype) : null,
                        pr.GetResult(train) is { Implicit: false } ? pr.GetValue(train) : null),
                    new OutputRules { Force = pr.GetValue(force), ForceAny = pr.GetValue(forceAny), SkipSpaceCheck = pr.GetValue(noSpaceCheck), Cancel = Interrupt.Token },
                    string.Equals(pr.GetValue(saveAs), "hf", StringComparison.OrdinalIgnoreCase)),
            pr.GetValue(GlobalOptions.Verbose), pr.GetValue(json)));
        return cmd;
    }

    /// <summary>The value of <paramref name="o"/> when it was typed, null when left to its default.</summary>
    static T? Given<T>(ParseResult pr, Option<T> o) where T : struct => pr.GetResult(o) is { Implicit: false } ? pr.GetValue(o) : null;

    static int Run(string ckpt, int steps, string? outDir, string deviceName, string dtypeName, TrainerOptions options,
        string? dataPath, long seed, string? resumeDir, int threads, bool json, TrainFlags given, OutputRules outRules, bool saveAsHf)
    {
        if (saveAsHf && outDir is null) throw new CliException(ExitCodes.Usage, "--save-as hf: give --out DIR (the folder the HF checkpoint is written to)");
        // --steps, --batch and --seq-len ranges are checked while parsing (OptionChecks.AtLeast).
        var device = TorchDevices.Start("train", ckpt, dataPath, threads, deviceName, seed);
        Trainer trainer;
        if (resumeDir is not null)
        {
            trainer = TrainResume.Resume(ckpt, resumeDir, device, given, steps);
            CliOutput.Current.Info($"resumed {resumeDir} at step {trainer.StepsDone} (options from the saved state)");
        }
        else
        {
            TrainResume.CheckHorizon(0, steps, options.TotalSteps, given.TotalSteps is not null);
            if (options.Train == TrainMode.Mtp && options.MtpLossScale == 0)
                throw new CliException(ExitCodes.Usage, "--train mtp with --mtp-loss-scale 0: the MTP depths would get no gradient (the main loss does not reach them); give a scale > 0");
            var dtype = CheckpointIO.ParseDType(dtypeName);
            var model = MtpModel.Load(ckpt, device, dtype);
            if (options.Train == TrainMode.Mtp && model.MtpDepthCount == 0)
            {
                string family = model.Family;
                model.Dispose();
                throw new CliException(ExitCodes.Usage, $"{ckpt}: --train mtp, but this {family} checkpoint has no MTP depths to train", ckpt);
            }
            var config = model.SourceConfig ?? throw new CliException(ExitCodes.Usage, $"{ckpt}: no config.json", ckpt);
            int vocab = model.VocabSize;
            TokenSource source = dataPath is null ? new SyntheticTokenSource(vocab, (ulong)seed) : new FileTokenSource(dataPath, vocab);
            trainer = new Trainer(model, source, options, config) { SourceDir = ckpt, StartCheckpoint = Path.GetFullPath(ckpt).TrimEnd('/'), Seed = seed };
        }
        using var _ = trainer;
        // The output is checked (replace rules, free space) and its temporary created before training, not after it.
        bool ownResume = outDir is not null && resumeDir is not null
            && Path.GetFullPath(outDir).TrimEnd('/') == Path.GetFullPath(resumeDir).TrimEnd('/');
        if (outDir is not null) outRules = outRules with { Force = outRules.Force || ownResume, CarriedNames = TopLevelFiles(resumeDir ?? ckpt) };
        if (saveAsHf) OutputFolder.CheckReplaceable(outDir!, outRules); // before training; the export checks again when it writes
        using OutputTransaction? txn = outDir is null || saveAsHf ? null : TrainingCheckpoint.Begin(trainer, outDir, outRules);
        var o = trainer.Options;
        var output = CliOutput.Current;
        long trained = trainer.Model.TrainableParameters().Sum(p => p.Param.numel());
        long frozen = trainer.Model.parameters().Sum(p => p.numel()) - trained;
        string mode = TrainModeJsonConverter.Name(o.Train);
        output.Info($"training {trainer.Model.Family}: {Units.Count(trainer.Model.NumHiddenLayers, "layer")} + {Units.Count(trainer.Model.MtpDepthCount, "MTP depth")}, " +
            $"{trained:N0} parameters trained, {frozen:N0} frozen (--train {mode}), {trainer.Model.DType} on {device}, batch {o.Batch}x{o.SeqLen}");
        var inv = CultureInfo.InvariantCulture;
        var times = new List<double>();
        var stepsJson = new JsonArray();
        var wall = Stopwatch.StartNew();
        long end = trainer.StepsDone + steps;
        void Loop()
        {
            for (int i = 0; i < steps; i++)
            {
                outRules.Cancel.ThrowIfCancellationRequested();
                var r = trainer.Step();
                times.Add(r.Seconds);
                if (json)
                {
                    var line = new JsonObject
                    {
                        ["step"] = r.Step,
                        ["loss"] = r.Loss,
                        ["mtp_losses"] = new JsonArray(r.MtpLosses.Select(x => (JsonNode)JsonValue.Create(x)!).ToArray()),
                        ["grad_norm"] = r.GradNorm,
                        ["tokens_per_s"] = Math.Round(r.TokensPerSecond, 1),
                        ["total_loss"] = r.TotalLoss,
                        ["lr"] = r.Lr,
                    };
                    stepsJson.Add(line);
                }
                else
                {
                    output.Result(string.Format(inv, "step {0}/{1}  loss {2:F4}  mtp [{3}]  grad_norm {4:F3}  lr {5:G3}  {6:F0} tok/s",
                        r.Step, end, r.Loss, string.Join(", ", r.MtpLosses.Select(x => x.ToString("F4", inv))), r.GradNorm, r.Lr, r.TokensPerSecond));
                }
            }
        }
        if (txn is null) Loop();
        else txn.Run(tmp => { Loop(); TrainingCheckpoint.WriteInto(trainer, tmp, txn.Target); return 0; });
        // An HF source is its own reference; a training-layout one exports from the source its conversion.json records.
        if (saveAsHf) TrainExport.SaveAsHf(trainer, outDir!, trainer.Model.SourceLineage is null ? null : ckpt, outRules);
        var summary = new JsonObject
        {
            ["steps"] = times.Count, ["seconds"] = Math.Round(wall.Elapsed.TotalSeconds, 3),
            ["train"] = mode, ["trained_parameters"] = trained, ["frozen_parameters"] = frozen,
        };
        if (times.Count > 0)
        {
            var steady = times.Count > 1 ? times.Skip(1).ToList() : times;
            double mean = steady.Average();
            summary["mean_step_ms"] = Math.Round(mean * 1000, 3);
            summary["tokens_per_s"] = Math.Round(o.Batch * o.SeqLen / mean, 1);
            summary["first_step_excluded"] = times.Count > 1;
            if (!json)
                output.Result(string.Format(inv, "{0} in {1:F2} s; mean step {2:F1} ms{4}, {3:F0} tokens/s",
                    Units.Count(times.Count, "step"), wall.Elapsed.TotalSeconds, mean * 1000, o.Batch * o.SeqLen / mean, times.Count > 1 ? " (first step excluded)" : ""));
        }
        if (json)
            CliOutput.Document(new JsonObject
            {
                ["ok"] = true, ["family"] = trainer.Model.Family, ["device"] = device.ToString(), ["dtype"] = trainer.Model.DType.ToString(),
                ["step"] = trainer.StepsDone, ["steps"] = stepsJson, ["summary"] = summary, ["saved"] = outDir,
            });
        else if (outDir is not null) output.Result($"saved {outDir} (step {trainer.StepsDone}{(saveAsHf ? ", Hugging Face layout" : "")})");
        return 0;
    }

    static string[] TopLevelFiles(string dir) => Directory.Exists(dir) ? Directory.GetFileSystemEntries(dir).Select(f => Path.GetFileName(f)!).ToArray() : [];
}
