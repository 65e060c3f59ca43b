using System.CommandLine;
using Mtp.Adapters;
using Mtp.SafeTensors;
using System.Text.Json.Nodes;
using Spectre.Console;

namespace Mtp.Cli.Commands;

/// <summary><c>mtp convert IN OUT --to native|hf</c>: lossless HF &lt;-&gt; training-layout conversion.</summary>
public static class ConvertCommand
{
    /// <summary>Builds the command.</summary>
    public static Command Create()
    {
        var input = new Argument<string?>("in") { Description = "Input checkpoint directory (or single .safetensors file)", Arity = ArgumentArity.ZeroOrOne };
        var output = new Argument<string?>("out") { Description = "Output directory (written atomically; must be empty unless --force)", Arity = ArgumentArity.ZeroOrOne };
        var to = new Option<string?>("--to") { Description = "Target layout: native (training) or hf (required unless --merge-index)" }.OneOfIgnoringCase("native", "hf");
        var part = new Option<string?>("--part") { Description = "i/n: convert only the i-th of n disjoint sets of output shards into OUT (shared by all parts); then run --merge-index OUT" };
        var merge = new Option<string?>("--merge-index") { Description = "OUT: once all --part i/n runs are done, check them and write the index, config.json and conversion.json" };
        var family = new Option<string?>("--family") { Description = "Family: deepseek-v3, deepseek-v4, qwen3.5, qwen3-next (default: detect from config.json)" }.Family();
        var dtype = new Option<string?>("--dtype") { Description = "bf16 (default) or f32 for quantized/BF16 tensors; with --to hf: write an unquantized HF checkpoint in this dtype (needed when neither --reference nor IN's conversion.json says the source format)" }.OneOfIgnoringCase("bf16|bfloat16", "f32|float32");
        var reference = new Option<string?>("--reference") { Description = "With --to hf: the original HF checkpoint (reuses its scales, shard names, weight_map and config.json)" };
        var layout = new Option<string>("--expert-layout") { Description = "Routed experts: stacked ([E,2I,H] gate_up_proj + [E,H,I] down_proj) or per-expert", DefaultValueFactory = _ => "stacked" }.OneOfIgnoringCase("stacked", "per-expert");
        var threads = new Option<int>("--threads") { Description = "Worker threads (0: all cores)", DefaultValueFactory = _ => 0 }.AtLeast(0);
        var shard = new Option<string>("--max-shard-size") { Description = "Maximum output shard size (e.g. 5GB, 500MB)", DefaultValueFactory = _ => "5GB" }.Size();
        var memory = new Option<string>("--max-memory") { Description = "Memory budget for tensors computed at once (e.g. 2GB)", DefaultValueFactory = _ => "2GB" }.Size();
        var keepCache = new Option<bool>("--keep-page-cache") { Description = "Leave input and output in the page cache (default: drop each range once consumed or written back, so memory stays bounded)" };
        var force = new Option<bool>("--force") { Description = OutputFlags.ForceHelp };
        var forceAny = new Option<bool>("--force-any") { Description = OutputFlags.ForceAnyHelp };
        var noSpaceCheck = new Option<bool>("--no-space-check") { Description = OutputFlags.NoSpaceCheckHelp };
        var allowUnknown = new Option<bool>("--allow-unknown") { Description = "Carry tensors no rule claims through unchanged (reported) instead of failing" };
        var json = new Option<bool>("--json") { Description = "Print one JSON summary on stdout, --merge-index too (or {\"error\": {...}} on failure)" };
        var cmd = new Command("convert", "Convert an MTP checkpoint between the Hugging Face layout and the training layout, losslessly")
        {
            input, output, to, family, dtype, reference, layout, threads, shard, memory, force, allowUnknown, json, part, merge, keepCache, forceAny, noSpaceCheck,
        };
        cmd.SetAction(pr => CommandRunner.Run(() =>
            {
                if (pr.GetValue(merge) is string mergeDir)
                {
                    if (pr.GetValue(input) != null || pr.GetValue(to) != null || pr.GetValue(part) != null)
                        throw new AdapterException(AdapterErrorKind.Usage, "--merge-index OUT takes no other arguments (no IN, OUT, --to or --part)");
                    ConversionResult m = Converter.MergeParts(mergeDir);
                    if (pr.GetValue(json)) CliOutput.Document(SummaryJson(m, "merge-index"));
                    else CliOutput.Current.Result($"merged {m.Shards.Count} shard(s) of {m.Family}: {m.TensorsWritten} tensors, {m.BytesWritten:N0} bytes -> {m.OutputDirectory}");
                    return ExitCodes.Ok;
                }
                if (pr.GetValue(input) == null || pr.GetValue(output) == null)
                    throw new AdapterException(AdapterErrorKind.Usage, "convert needs IN and OUT (or --merge-index OUT)");
                if (pr.GetValue(to) == null) throw new AdapterException(AdapterErrorKind.Usage, "--to native|hf is required");
                (int, int)? partOf = null;
                if (pr.GetValue(part) is string ps)
                {
                    var bits = ps.Split('/');
                    if (bits.Length != 2 || !int.TryParse(bits[0], out int pi) || !int.TryParse(bits[1], out int pn) || pn < 1 || pi < 1 || pi > pn)
                        throw new AdapterException(AdapterErrorKind.Usage, $"--part must be i/n with 1 <= i <= n (e.g. 2/8), not '{ps}'");
                    partOf = (pi, pn);
                }
                string dir = pr.GetValue(to)?.ToLowerInvariant() switch
                {
                    "native" => "native",
                    "hf" => "hf",
                    var x => throw new AdapterException(AdapterErrorKind.Usage, $"--to must be native or hf, not '{x}'"),
                };
                DType? dt = pr.GetValue(dtype)?.ToLowerInvariant() switch
                {
                    null => null,
                    "bf16" or "bfloat16" => DType.BF16,
                    "f32" or "float32" => DType.F32,
                    var x => throw new AdapterException(AdapterErrorKind.Usage, $"--dtype must be bf16 or f32, not '{x}'"),
                };
                bool perExpert = pr.GetValue(layout)?.ToLowerInvariant() switch
                {
                    "stacked" or null => false,
                    "per-expert" => true,
                    var x => throw new AdapterException(AdapterErrorKind.Usage, $"--expert-layout must be stacked or per-expert, not '{x}'"),
                };
                if (dir == "native" && pr.GetValue(reference) != null) throw new AdapterException(AdapterErrorKind.Usage, "--reference only applies to --to hf");
                var options = new ConvertOptions
                {
                    Family = pr.GetValue(family), DType = dt, Reference = pr.GetValue(reference), PerExpertLayout = perExpert,
                    Threads = Math.Max(0, pr.GetValue(threads)), MaxShardBytes = Units.ParseSize(pr.GetValue(shard)!),
                    MaxMemoryBytes = Units.ParseSize(pr.GetValue(memory)!), Force = pr.GetValue(force), AllowUnknown = pr.GetValue(allowUnknown),
                    Part = partOf, DropBehind = !pr.GetValue(keepCache),
                    ForceAny = pr.GetValue(forceAny), SkipSpaceCheck = pr.GetValue(noSpaceCheck), Cancel = Interrupt.Token,
                    Logger = CliOutput.Current.Log,
                };
                string inDir = pr.GetValue(input)!, outDir = pr.GetValue(output)!;
                bool asJson = pr.GetValue(json);
                ConversionResult r = RunWithProgress(p => dir == "native" ? Converter.ToNative(inDir, outDir, options, p) : Converter.ToHf(inDir, outDir, options, p), asJson);
                var cli = CliOutput.Current;
                foreach (var u in r.CarriedUnknown) cli.Warn($"unknown tensor carried through: {u}");
                if (asJson) CliOutput.Document(SummaryJson(r, dir));
                else if (partOf is { } po)
                    cli.Result($"part {po.Item1}/{po.Item2}: wrote {r.Shards.Count} shard(s), {r.BytesWritten:N0} bytes in {r.Elapsed.TotalSeconds:F1}s; " +
                        $"run mtp convert --merge-index {outDir} once all {po.Item2} parts are done");
                else cli.Result($"{r.Family} -> {dir}: {r.TensorsWritten} tensors, {r.BytesWritten:N0} bytes in {r.Shards.Count} shard(s), {r.Dropped.Count} dropped, " +
                    $"{r.CarriedUnknown.Count} unknown carried, {r.Requantized.Count} re-quantized with new scales, {r.Elapsed.TotalSeconds:F1}s -> {r.OutputDirectory}");
                return ExitCodes.Ok;
            }, pr.GetValue(GlobalOptions.Verbose), pr.GetValue(json)));
        return cmd;
    }

    /// <summary>The --json success summary of a conversion.</summary>
    public static JsonObject SummaryJson(ConversionResult r, string direction) => new()
    {
        ["ok"] = true,
        ["direction"] = direction,
        ["family"] = r.Family,
        ["output"] = r.OutputDirectory,
        ["tensors"] = r.TensorsWritten,
        ["bytes"] = r.BytesWritten,
        ["shards"] = new JsonArray(r.Shards.Select(s => (JsonNode)JsonValue.Create(s)!).ToArray()),
        ["dropped"] = new JsonArray(r.Dropped.Select(d => (JsonNode)new JsonObject { ["name"] = d.Name, ["reason"] = d.Reason }).ToArray()),
        ["carried_unknown"] = new JsonArray(r.CarriedUnknown.Select(s => (JsonNode)JsonValue.Create(s)!).ToArray()),
        ["requantized"] = new JsonArray(r.Requantized.Select(q => (JsonNode)new JsonObject { ["name"] = q.Name, ["new_scale_blocks"] = q.ChangedBlocks }).ToArray()),
        ["seconds"] = Math.Round(r.Elapsed.TotalSeconds, 3),
    };

    static ConversionResult RunWithProgress(Func<ConvertProgress, ConversionResult> run, bool json)
    {
        var cli = CliOutput.Current;
        if (json || cli.Quiet || !cli.InteractiveProgress)
        {
            // Not a terminal (or nothing to show): timed lines on stderr, which --json and --quiet filter out.
            var progress = new TimedProgress("converting", cli.Info);
            return run(new ConvertProgress { Started = progress.Start, Advanced = (n, _) => progress.Advance(n), Log = cli.Info });
        }
        ConversionResult? result = null;
        cli.Stdout.Progress()
            .Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new DownloadedColumn(), new TransferSpeedColumn(), new RemainingTimeColumn())
            .Start(ctx =>
            {
                ProgressTask? task = null;
                result = run(new ConvertProgress
                {
                    Started = t => task = ctx.AddTask("converting", maxValue: Math.Max(1, t)),
                    Advanced = (n, _) => task?.Increment(n),
                    Log = l => cli.Stdout.MarkupLine("[grey]{0}[/]", Markup.Escape(l)),
                });
            });
        return result!;
    }
}
