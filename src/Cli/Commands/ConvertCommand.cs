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
        var f = new ConvertFlags();
        var cmd = new Command("convert", "Convert an MTP checkpoint between the Hugging Face layout and the training layout, losslessly");
        foreach (Symbol s in f.All)
            if (s is Argument a) cmd.Arguments.Add(a); else cmd.Options.Add((Option)s);
        cmd.SetAction(pr => CommandRunner.Run(() => pr.GetValue(f.Merge) is string mergeDir ? Merge(pr, f, mergeDir) : Convert(pr, f),
            pr.GetValue(GlobalOptions.Verbose), pr.GetValue(f.Json)));
        return cmd;
    }

    // mtp convert --merge-index OUT
    static int Merge(ParseResult pr, ConvertFlags f, string mergeDir)
    {
        if (pr.GetValue(f.Input) != null || pr.GetValue(f.To) != null || pr.GetValue(f.Part) != null)
            throw new AdapterException(AdapterErrorKind.Usage, "--merge-index OUT takes no other arguments (no IN, OUT, --to or --part)");
        ConversionResult m = Converter.MergeParts(mergeDir);
        if (pr.GetValue(f.Json)) CliOutput.Document(SummaryJson(m, "merge-index"));
        else CliOutput.Current.Result($"merged {m.Shards.Count} shard(s) of {m.Family}: {m.TensorsWritten} tensors, {m.BytesWritten:N0} bytes -> {m.OutputDirectory}");
        return ExitCodes.Ok;
    }

    // mtp convert IN OUT --to native|hf [--part i/n] ...: the checks in the order they were always made, then the conversion.
    static int Convert(ParseResult pr, ConvertFlags f)
    {
        if (pr.GetValue(f.Input) == null || pr.GetValue(f.Output) == null)
            throw new AdapterException(AdapterErrorKind.Usage, "convert needs IN and OUT (or --merge-index OUT)");
        if (pr.GetValue(f.To) == null) throw new AdapterException(AdapterErrorKind.Usage, "--to native|hf is required");
        var partOf = ParsePart(pr, f);
        string dir = pr.GetValue(f.To)?.ToLowerInvariant() switch
        {
            "native" => "native",
            "hf" => "hf",
            var x => throw new AdapterException(AdapterErrorKind.Usage, $"--to must be native or hf, not '{x}'"),
        };
        DType? dt = pr.GetValue(f.Dtype)?.ToLowerInvariant() switch
        {
            null => null,
            "bf16" or "bfloat16" => DType.BF16,
            "f32" or "float32" => DType.F32,
            var x => throw new AdapterException(AdapterErrorKind.Usage, $"--dtype must be bf16 or f32, not '{x}'"),
        };
        bool perExpert = pr.GetValue(f.Layout)?.ToLowerInvariant() switch
        {
            "stacked" or null => false,
            "per-expert" => true,
            var x => throw new AdapterException(AdapterErrorKind.Usage, $"--expert-layout must be stacked or per-expert, not '{x}'"),
        };
        if (dir == "native" && pr.GetValue(f.Reference) != null) throw new AdapterException(AdapterErrorKind.Usage, "--reference only applies to --to hf");
        var options = Options(pr, f, dt, perExpert, partOf);
        string inDir = pr.GetValue(f.Input)!, outDir = pr.GetValue(f.Output)!;
        bool asJson = pr.GetValue(f.Json);
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
    }

    static (int, int)? ParsePart(ParseResult pr, ConvertFlags f)
    {
        if (pr.GetValue(f.Part) is not string ps) return null;
        var bits = ps.Split('/');
        if (bits.Length != 2 || !int.TryParse(bits[0], out int pi) || !int.TryParse(bits[1], out int pn) || pn < 1 || pi < 1 || pi > pn)
            throw new AdapterException(AdapterErrorKind.Usage, $"--part must be i/n with 1 <= i <= n (e.g. 2/8), not '{ps}'");
        return (pi, pn);
    }

    static ConvertOptions Options(ParseResult pr, ConvertFlags f, DType? dt, bool perExpert, (int, int)? partOf)
    {
        return new ConvertOptions
        {
            Family = pr.GetValue(f.Family), DType = dt, Reference = pr.GetValue(f.Reference), PerExpertLayout = perExpert,
            Threads = Math.Max(0, pr.GetValue(f.Threads)), MaxShardBytes = Units.ParseSize(pr.GetValue(f.Shard)!),
            MaxMemoryBytes = Units.ParseSize(pr.GetValue(f.Memory)!), Force = pr.GetValue(f.Force), AllowUnknown = pr.GetValue(f.AllowUnknown),
            Part = partOf, DropBehind = !pr.GetValue(f.KeepCache),
            ForceAny = pr.GetValue(f.ForceAny), SkipSpaceCheck = pr.GetValue(f.NoSpaceCheck), Cancel = Interrupt.Token,
            Logger = CliOutput.Current.Log,
        };
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
