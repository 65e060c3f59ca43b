using System.CommandLine;
using System.Globalization;
using System.Text.Json.Nodes;
using Mtp.Adapters;
using Mtp.Adapters.Synthetic;
using Mtp.SafeTensors;

namespace Mtp.Cli.Commands;

/// <summary>
/// <c>mtp synth --family F [--size S | --layers N --hidden H --experts E --vocab V] [--mtp-depth D]
/// [--quant bf16|fp8] [--seed S] [--max-shard-size 5GB] [--force | --force-any] [--no-space-check] OUT</c>: writes a synthetic checkpoint in
/// the family's HF layout and quantization, streaming (bounded memory whatever the size).
/// </summary>
public static class SynthCommand
{
    /// <summary>Builds the command.</summary>
    public static Command Create()
    {
        var output = new Argument<string>("out") { Description = "Output checkpoint directory (created; must be empty unless --force)" };
        var family = new Option<string>("--family") { Description = "Family to write (qwen3-next has no synthetic layout yet)", Required = true }.SynthFamily("synth");
        var size = new Option<string?>("--size") { Description = "Target tensor bytes, e.g. 500MB, 4GB, 1.5GiB: scales the release shape (layers, then experts, then hidden) to land within 10%" }.Size();
        var layers = new Option<int?>("--layers") { Description = "Main decoder layers (default: 3 for DeepSeek, 4 for Qwen3.5; chosen by --size)" }.AtLeast(1);
        var hidden = new Option<int?>("--hidden") { Description = "Hidden size, a multiple of 32 (default 64; chosen by --size); other widths follow the release's proportions" }.AtLeast(1);
        var experts = new Option<int?>("--experts") { Description = "Routed experts per MoE layer (default 4; chosen by --size)" }.AtLeast(1);
        var vocab = new Option<int?>("--vocab") { Description = "Vocabulary size (default 512; with --size: the release's, capped at ~10% of the target)" }.AtLeast(1);
        var depth = new Option<int>("--mtp-depth") { Description = "MTP depth", DefaultValueFactory = _ => 1 }.AtLeast(0);
        var quant = new Option<string?>("--quant") { Description = "Qwen3.5 only: bf16 (the BF16 release, default) or fp8 (the FP8 release)" }.OneOf("bf16", "fp8");
        var seed = new Option<ulong>("--seed") { Description = "Random seed: the same seed gives byte-identical files", DefaultValueFactory = _ => 0 };
        var maxShard = new Option<string>("--max-shard-size") { Description = "Largest shard file", DefaultValueFactory = _ => "5GB" }.Size();
        var force = new Option<bool>("--force") { Description = OutputFlags.ForceHelp };
        var forceAny = new Option<bool>("--force-any") { Description = OutputFlags.ForceAnyHelp };
        var noSpaceCheck = new Option<bool>("--no-space-check") { Description = OutputFlags.NoSpaceCheckHelp };
        var json = new Option<bool>("--json") { Description = "Print one JSON summary on stdout (or {\"error\": {...}} on failure)" };
        var cmd = new Command("synth", "Write a synthetic checkpoint in a family's real HF layout and quantization, of a given size");
        cmd.Arguments.Add(output);
        foreach (Option o in new Option[] { family, size, layers, hidden, experts, vocab, depth, quant, seed, maxShard, force, forceAny, noSpaceCheck, json }) cmd.Options.Add(o);
        cmd.SetAction(r => CommandRunner.Run(() =>
        {
            string fam = Families.Normalize(r.GetValue(family)!)!; // a known id: checked while parsing (SynthFamily)
            string? q = r.GetValue(quant);
            if (q is not null && fam != "qwen3.5") throw new CliException(ExitCodes.Usage, "--quant applies to --family qwen3.5 only (DeepSeek families are written as their release is quantized)");
            long? target = r.GetValue(size) is string s ? Units.ParseSize(s) : null;
            if (target is <= 0) throw new CliException(ExitCodes.Usage, "--size must be positive");
            long shardBytes = Units.ParseSize(r.GetValue(maxShard)!);
            if (shardBytes <= 0) throw new CliException(ExitCodes.Usage, "--max-shard-size must be positive");
            foreach (var (name, v) in new[] { ("--layers", r.GetValue(layers)), ("--hidden", r.GetValue(hidden)), ("--experts", r.GetValue(experts)), ("--vocab", r.GetValue(vocab)) })
                if (v is <= 0) throw new CliException(ExitCodes.Usage, $"{name} must be positive");
            if (r.GetValue(depth) < 0) throw new CliException(ExitCodes.Usage, "--mtp-depth must not be negative");
            var overrides = new SynthOverrides(r.GetValue(layers), r.GetValue(hidden), r.GetValue(experts), r.GetValue(vocab), r.GetValue(depth));

            string outDir = r.GetValue(output)!;
            if (File.Exists(outDir)) throw new CliException(ExitCodes.Usage, $"{outDir} is a file; synth writes a directory");
            var rules = new OutputRules { Force = r.GetValue(force), ForceAny = r.GetValue(forceAny), SkipSpaceCheck = r.GetValue(noSpaceCheck), Cancel = Interrupt.Token };
            OutputFolder.CheckReplaceable(outDir, rules); // before sizing; checked again when the output begins

            SynthModel model;
            try { model = SynthSizing.Resolve(fam, q == "fp8", target, overrides); }
            catch (ArgumentException e) { throw new CliException(ExitCodes.Usage, e.Message); }
            SynthPlan plan = model.Build();
            long total = plan.TotalBytes;
            var cli = CliOutput.Current;
            cli.Info($"synth: {fam}{(q == "fp8" ? " (fp8)" : "")}: hidden {model.Hidden}, layers {model.Layers}, experts {model.Experts}, vocab {model.Vocab}, MTP depth {model.MtpDepth}: {plan.Tensors.Count:N0} tensors, {Units.Bytes(total)}");
            if (target is long t && Math.Abs(total - t) > SynthSizing.Tolerance * t)
                cli.Warn($"{Units.Bytes(total)} is more than 10% from the requested {Units.Bytes(t)} (closest shape found)");

            // A line a second on a terminal (as before); timed lines, every 10 s by default, in a log.
            var progress = new TimedProgress("synth", cli.Info, cli.InteractiveProgress ? TimeSpan.FromSeconds(1) : null);
            SynthResult res = SynthWriter.WriteCheckpoint(plan, outDir, r.GetValue(seed), shardBytes, rules, progress.Report);
            double secs = res.Elapsed.TotalSeconds;
            if (r.GetValue(json))
                CliOutput.Document(new JsonObject
                {
                    ["ok"] = true, ["family"] = fam, ["quant"] = q, ["output"] = outDir,
                    ["tensors"] = res.Tensors, ["bytes"] = res.Bytes, ["shards"] = res.Shards, ["seconds"] = Math.Round(secs, 3),
                    ["hidden"] = model.Hidden, ["layers"] = model.Layers, ["experts"] = model.Experts, ["vocab"] = model.Vocab, ["mtp_depth"] = model.MtpDepth,
                });
            else cli.Result(string.Create(CultureInfo.InvariantCulture,
                $"synth: wrote {outDir}: {res.Tensors} tensors, {res.Bytes} bytes ({Units.Bytes(res.Bytes)}), {Units.Count(res.Shards, "shard")}, {secs:0.00} s, {res.Bytes / 1e6 / Math.Max(secs, 1e-9):0} MB/s"));
            return ExitCodes.Ok;
        }, r.GetValue(GlobalOptions.Verbose), r.GetValue(json)));
        return cmd;
    }
}
