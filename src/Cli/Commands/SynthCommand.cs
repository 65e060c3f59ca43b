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
        var family = new Option<string>("--family") { Description = "Family to write (qwen3-next has no synthetic layout yet); required unless --like" }.SynthFamily("synth");
        var like = new Option<string?>("--like") { Description = "A released config.json: write a header-true replica of that checkpoint (its tensor names, shapes, dtypes; the config copied verbatim); needs --sparse", HelpName = "CONFIG.json" };
        var index = new Option<string?>("--index") { Description = "With --like: the release's model.safetensors.index.json, whose weight map fixes the shard files and which tensor each holds", HelpName = "WEIGHT_MAP.json" };
        var sparse = new Option<bool>("--sparse") { Description = "With --like: shards as sparse files, the data as holes except the scales, written for real (a 689 GB replica takes a few MB of disk)" };
        var headerOnly = new Option<bool>("--header-only") { Description = "With --sparse: write no scales either (every data byte a hole; enough for planning and header checks)" };
        var noFp4Scales = new Option<bool>("--no-fp4-scales") { Description = "With --sparse: leave FP4 group scales as holes (E8M0 0 = 2^-127, finite); for DeepSeek-V4-Pro, whose FP4 scales alone are 49 GB" };
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
        foreach (Option o in new Option[] { family, like, index, sparse, headerOnly, noFp4Scales, size, layers, hidden, experts, vocab, depth, quant, seed, maxShard, force, forceAny, noSpaceCheck, json }) cmd.Options.Add(o);
        cmd.SetAction(r => CommandRunner.Run(() =>
        {
            if (r.GetValue(like) is string likePath) return Replica(r, likePath);
            if (r.GetValue(index) is not null || r.GetValue(sparse) || r.GetValue(headerOnly) || r.GetValue(noFp4Scales))
                throw new CliException(ExitCodes.Usage, "--index, --sparse, --header-only and --no-fp4-scales apply to --like only");
            if (r.GetValue(family) is null) throw new CliException(ExitCodes.Usage, "synth needs --family F (or --like CONFIG.json --sparse for a replica of a released checkpoint)");
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

        // mtp synth --like CONFIG.json [--index MAP] --sparse [--header-only | --no-fp4-scales] OUT
        int Replica(ParseResult r, string likePath)
        {
            if (!r.GetValue(sparse)) throw new CliException(ExitCodes.Usage, "--like writes a sparse replica: add --sparse (a dense copy of a released checkpoint's size is what --family F --size S is for)");
            foreach (var (name, given) in new[] { ("--family", r.GetValue(family) is not null), ("--size", r.GetValue(size) is not null), ("--layers", r.GetValue(layers) is not null),
                ("--hidden", r.GetValue(hidden) is not null), ("--experts", r.GetValue(experts) is not null), ("--vocab", r.GetValue(vocab) is not null), ("--quant", r.GetValue(quant) is not null) })
                if (given) throw new CliException(ExitCodes.Usage, $"{name} does not apply to --like: the released config.json fixes the family and every dimension");
            if (r.GetValue(headerOnly) && r.GetValue(noFp4Scales)) throw new CliException(ExitCodes.Usage, "--header-only already leaves every scale as a hole; drop --no-fp4-scales");
            if (!File.Exists(likePath)) throw new CliException(ExitCodes.Usage, $"{likePath}: no such file (--like takes a released config.json)");
            byte[] configBytes = File.ReadAllBytes(likePath);
            JsonObject cfg;
            try { cfg = JsonNode.Parse(configBytes) as JsonObject ?? throw new CliException(ExitCodes.Malformed, $"{likePath}: not a JSON object"); }
            catch (System.Text.Json.JsonException e) { throw new CliException(ExitCodes.Malformed, $"{likePath}: not valid JSON: {e.Message}"); }
            SynthModel model;
            SynthPlan plan;
            try { model = SynthLike.FromConfig(cfg, likePath); plan = model.Build(); }
            catch (ArgumentException e) { throw new CliException(ExitCodes.Malformed, e.Message); }
            string? indexPath = r.GetValue(index);
            ShardIndex? map = null;
            if (indexPath is not null)
            {
                if (!File.Exists(indexPath)) throw new CliException(ExitCodes.Usage, $"{indexPath}: no such file (--index takes a model.safetensors.index.json)");
                map = ShardIndex.Read(indexPath);
            }
            long shardBytes = Units.ParseSize(r.GetValue(maxShard)!);
            if (shardBytes <= 0) throw new CliException(ExitCodes.Usage, "--max-shard-size must be positive");
            IReadOnlyList<ShardPlan> shards;
            List<string> skipped;
            try { shards = ReplicaWriter.Layout(plan, map, indexPath, shardBytes, out skipped); }
            catch (ArgumentException e) { throw new CliException(ExitCodes.Malformed, e.Message); }
            var data = r.GetValue(headerOnly) ? ReplicaData.HeadersOnly : r.GetValue(noFp4Scales) ? ReplicaData.BlockScales : ReplicaData.Scales;
            string outDir = r.GetValue(output)!;
            if (File.Exists(outDir)) throw new CliException(ExitCodes.Usage, $"{outDir} is a file; synth writes a directory");
            var rules = new OutputRules { Force = r.GetValue(force), ForceAny = r.GetValue(forceAny), SkipSpaceCheck = r.GetValue(noSpaceCheck), Cancel = Interrupt.Token };
            var cli = CliOutput.Current;
            cli.Info($"synth: replica of {likePath} ({plan.Family}{(model is Qwen35Synth { Fp8: true } ? ", fp8" : "")}): {plan.Tensors.Count:N0} tensors, {Units.Bytes(plan.TotalBytes)} in {Units.Count(shards.Count, "shard")}");
            if (skipped.Count > 0)
                cli.Warn($"{indexPath}: {Units.Count(skipped.Count, "tensor")} of the weight map are not in the family's tensor list and are not written (first: '{skipped[0]}')");
            var progress = new TimedProgress("synth", cli.Info, cli.InteractiveProgress ? TimeSpan.FromSeconds(1) : null);
            ReplicaResult res = ReplicaWriter.WriteCheckpoint(plan, shards, configBytes, outDir, r.GetValue(seed), data, skipped, rules, progress.Report);
            double secs = res.Elapsed.TotalSeconds;
            if (r.GetValue(json))
                CliOutput.Document(new JsonObject
                {
                    ["ok"] = true, ["family"] = plan.Family, ["like"] = likePath, ["output"] = outDir, ["sparse"] = true,
                    ["data"] = data switch { ReplicaData.HeadersOnly => "headers-only", ReplicaData.BlockScales => "block-scales", _ => "scales" },
                    ["tensors"] = res.Tensors, ["bytes"] = res.LogicalBytes, ["written_bytes"] = res.WrittenBytes, ["shards"] = res.Shards,
                    ["skipped"] = res.Skipped.Count, ["seconds"] = Math.Round(secs, 3),
                });
            else cli.Result(string.Create(CultureInfo.InvariantCulture,
                $"synth: wrote replica {outDir}: {res.Tensors} tensors, {res.LogicalBytes} bytes ({Units.Bytes(res.LogicalBytes)}) as holes but {res.WrittenBytes} bytes of scales ({Units.Bytes(res.WrittenBytes)}), {Units.Count(res.Shards, "shard")}, {secs:0.00} s"));
            return ExitCodes.Ok;
        }
    }
}
