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
public static partial class TrainCommand
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
        var cmd = new Command("train", "Train a checkpoint of any family with a model (DeepSeek-V3/V3.2/V4, Qwen3.5/Qwen3-Next, GLM-4.5/GLM-5), in the training layout or straight from its Hugging Face release, with its MTP depths (main + MTP loss, or the depths alone with --train mtp) and optionally save it.")
        {
            ckpt, steps, outDir, saveAs, device, dtype, lr, batch, seqLen, data, seed, mtpScale, warmup, total, resume, train, threads, json, force, forceAny, noSpaceCheck,
        };
        cmd.SetAction(pr => CommandRunner.Run(() => Run(new TrainRequest
            {
                Checkpoint = pr.GetValue(ckpt)!, Steps = pr.GetValue(steps), OutDir = pr.GetValue(outDir), Device = pr.GetValue(device)!, DType = pr.GetValue(dtype)!,
                Options = new TrainerOptions
                {
                    Lr = pr.GetValue(lr), Batch = pr.GetValue(batch), SeqLen = pr.GetValue(seqLen), MtpLossScale = pr.GetValue(mtpScale),
                    Warmup = pr.GetValue(warmup), TotalSteps = pr.GetValue(total) ?? pr.GetValue(steps),
                    Train = TrainModeJsonConverter.Parse(pr.GetValue(train)!) ?? TrainMode.All,
                },
                DataPath = pr.GetValue(data), Seed = pr.GetValue(seed), ResumeDir = pr.GetValue(resume), Threads = pr.GetValue(threads), Json = pr.GetValue(json),
                Given = new TrainFlags(Given(pr, lr), Given(pr, batch), Given(pr, seqLen), pr.GetValue(data), Given(pr, seed), Given(pr, mtpScale), Given(pr, warmup),
                    pr.GetValue(total), pr.GetResult(dtype) is { Implicit: false } ? pr.GetValue(dtype) : null,
                    pr.GetResult(train) is { Implicit: false } ? pr.GetValue(train) : null),
                OutRules = new OutputRules { Force = pr.GetValue(force), ForceAny = pr.GetValue(forceAny), SkipSpaceCheck = pr.GetValue(noSpaceCheck), Cancel = Interrupt.Token },
                SaveAsHf = string.Equals(pr.GetValue(saveAs), "hf", StringComparison.OrdinalIgnoreCase),
            }),
            pr.GetValue(GlobalOptions.Verbose), pr.GetValue(json)));
        return cmd;
    }

    /// <summary>The value of <paramref name="o"/> when it was typed, null when left to its default.</summary>
    static T? Given<T>(ParseResult pr, Option<T> o) where T : struct => pr.GetResult(o) is { Implicit: false } ? pr.GetValue(o) : null;
}
