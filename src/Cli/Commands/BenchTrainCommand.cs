using System.CommandLine;
using System.Globalization;
using System.Text.Json.Nodes;
using Mtp.Model;
using Spectre.Console;
using TorchSharp;

namespace Mtp.Cli.Commands;

/// <summary>
/// <c>mtp bench train [CKPT...]</c>: the median time of one training step (batch, forward, MTP loss, backward, clip,
/// AdamW) of each checkpoint's model, in F32 and BF16, so the figure is tracked per family. Default: the repository's
/// HF fixtures (loaded directly).
/// </summary>
public static class BenchTrainCommand
{
    static readonly string[] DefaultFixtures = { "deepseek-v3", "deepseek-v4-flash", "qwen3.5-moe" };

    /// <summary>Builds the command.</summary>
    public static Command Create()
    {
        var ckpts = new Argument<string[]>("checkpoint") { Description = "Checkpoints (training layout or HF). Default: fixtures/deepseek-v3, fixtures/deepseek-v4-flash, fixtures/qwen3.5-moe under the current directory.", Arity = ArgumentArity.ZeroOrMore };
        var steps = new Option<int>("--steps") { Description = "Timed steps per model and dtype (after untimed warm-up steps: until the JIT is done); the median is reported.", DefaultValueFactory = _ => 10 }.AtLeast(1);
        var batch = new Option<int>("--batch") { Description = "Rows per batch.", DefaultValueFactory = _ => 2 }.AtLeast(1);
        var seqLen = new Option<int>("--seq-len") { Description = "Tokens per row.", DefaultValueFactory = _ => 64 }.AtLeast(2);
        var dtypes = new Option<string>("--dtype") { Description = "f32, bf16 or both.", DefaultValueFactory = _ => "both" }.OneOfIgnoringCase("f32", "bf16", "both");
        var threads = new Option<int>("--threads") { Description = "CPU intra-op threads (as train's).", DefaultValueFactory = _ => 1 }.AtLeast(0);
        var untimed = new Option<int>("--untimed") { Description = "Untimed steps first; 0 (default): as many as it takes until the JIT has compiled nothing for 0.5 s (at least 2, at most 200).", DefaultValueFactory = _ => 0 }.AtLeast(0);
        var json = new Option<bool>("--json") { Description = "Print one JSON object." };
        var cmd = new Command("train", "Median training-step time of each family's fixture model (or the given checkpoints) in F32 and BF16") { ckpts, steps, batch, seqLen, dtypes, threads, untimed, json };
        cmd.SetAction(pr => CommandRunner.Run(() => Run(pr.GetValue(ckpts) ?? [], pr.GetValue(steps), pr.GetValue(batch), pr.GetValue(seqLen), pr.GetValue(dtypes)!,
            pr.GetValue(threads), pr.GetValue(untimed), pr.GetValue(json)), pr.GetValue(GlobalOptions.Verbose), pr.GetValue(json)));
        return cmd;
    }

    /// <summary>At most this many untimed steps warm a model up.</summary>
    const int MaxWarmUpSteps = 200;

    /// <summary>How long the JIT must have compiled nothing before steps count as steady.</summary>
    static readonly TimeSpan QuietJit = TimeSpan.FromSeconds(0.5);

    /// <summary>
    /// Untimed steps until the step code is in its final form: .NET first runs methods as quickly-compiled tier-0 code
    /// and recompiles the hot ones (tier 1) on a background thread after 30 calls and a 100 ms delay, so the first
    /// second or so of steps runs slower code while the JIT takes CPU. Steps run (at least 2) until no method was compiled
    /// for <see cref="QuietJit"/>, at most <see cref="MaxWarmUpSteps"/>; returns how many ran. PyTorch eager, which the
    /// figure is compared with, has no such phase. A positive <paramref name="count"/> runs that many instead.
    /// </summary>
    static int WarmUp(Trainer trainer, int count)
    {
        if (count > 0)
        {
            for (int i = 0; i < count; i++) trainer.Step();
            return count;
        }
        var quiet = System.Diagnostics.Stopwatch.StartNew();
        long compiled = System.Runtime.JitInfo.GetCompiledMethodCount();
        int n = 0;
        while (n < MaxWarmUpSteps && (n < 2 || quiet.Elapsed < QuietJit))
        {
            trainer.Step();
            n++;
            long now = System.Runtime.JitInfo.GetCompiledMethodCount();
            if (now != compiled) { compiled = now; quiet.Restart(); }
        }
        return n;
    }

    static int Run(string[] dirs, int steps, int batch, int seqLen, string dtypeName, int threads, int warmupSteps, bool json)
    {
        if (dirs.Length == 0) dirs = DefaultFixtures.Select(f => Path.Combine("fixtures", f)).ToArray();
        foreach (string d in dirs)
            if (!Directory.Exists(d)) throw new CliException(ExitCodes.Usage, $"{d}: no such directory (run from the repository root, or name checkpoints)", d);
        TorchDevices.SetThreads(threads);
        var kinds = dtypeName.ToLowerInvariant() switch { "f32" => new[] { "f32" }, "bf16" => new[] { "bf16" }, _ => new[] { "f32", "bf16" } };
        var rows = new JsonArray();
        var table = new Table().Border(TableBorder.Rounded).AddColumns("checkpoint", "family", "dtype", "median step", "tokens/s");
        var inv = CultureInfo.InvariantCulture;
        foreach (string dir in dirs)
            foreach (string kind in kinds)
            {
                torch.manual_seed(0);
                using var model = MtpModel.Load(dir, torch.CPU, CheckpointIO.ParseDType(kind));
                using var trainer = new Trainer(model, new SyntheticTokenSource(model.VocabSize, 0), new TrainerOptions { Batch = batch, SeqLen = seqLen, TotalSteps = steps + Math.Max(warmupSteps, MaxWarmUpSteps) });
                int warmup = WarmUp(trainer, warmupSteps);
                var times = Enumerable.Range(0, steps).Select(_ => trainer.Step().Seconds).Order().ToList();
                double median = times.Count % 2 == 1 ? times[times.Count / 2] : (times[times.Count / 2 - 1] + times[times.Count / 2]) / 2;
                rows.Add(new JsonObject
                {
                    ["checkpoint"] = dir, ["family"] = model.Family, ["dtype"] = kind, ["median_step_ms"] = Math.Round(median * 1000, 3),
                    ["min_step_ms"] = Math.Round(times[0] * 1000, 3), ["tokens_per_s"] = Math.Round(batch * seqLen / median, 1),
                    ["warmup_steps"] = warmup,
                });
                table.AddRow(dir, model.Family, kind, (median * 1000).ToString("F1", inv) + " ms", (batch * seqLen / median).ToString("F0", inv));
            }
        if (json) CliOutput.Document(new JsonObject { ["batch"] = batch, ["seq_len"] = seqLen, ["threads"] = threads, ["steps"] = steps, ["results"] = rows });
        else
        {
            CliOutput.Current.Render(table);
            CliOutput.Current.Result($"median of {steps} steps after untimed warm-up steps ({string.Join(", ", rows.Select(r => r!["warmup_steps"]!.GetValue<int>()))}), batch {batch}x{seqLen}, {threads} thread(s); forward + MTP loss + backward + clip + AdamW");
        }
        return ExitCodes.Ok;
    }
}
