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
public static partial class SynthCommand
{
    /// <summary>Builds the command.</summary>
    public static Command Create()
    {
        var f = new SynthFlags();
        var cmd = new Command("synth", "Write a synthetic checkpoint in a family's real HF layout and quantization, of a given size");
        cmd.Arguments.Add(f.Output);
        foreach (Option o in f.All) cmd.Options.Add(o);
        cmd.SetAction(r => CommandRunner.Run(() => r.GetValue(f.Like) is string likePath ? Replica(r, f, likePath) : Dense(r, f),
            r.GetValue(GlobalOptions.Verbose), r.GetValue(f.Json)));
        return cmd;
    }

    // mtp synth --family F [--size S | --layers N ...] OUT
    static int Dense(ParseResult r, SynthFlags f)
    {
        if (r.GetValue(f.Index) is not null || r.GetValue(f.Sparse) || r.GetValue(f.HeaderOnly) || r.GetValue(f.NoFp4Scales))
            throw new CliException(ExitCodes.Usage, "--index, --sparse, --header-only and --no-fp4-scales apply to --like only");
        if (r.GetValue(f.Family) is null) throw new CliException(ExitCodes.Usage, "synth needs --family F (or --like CONFIG.json --sparse for a replica of a released checkpoint)");
        string fam = Families.Normalize(r.GetValue(f.Family)!)!; // a known id: checked while parsing (SynthFamily)
        string? q = r.GetValue(f.Quant);
        if (q is not null && fam != "qwen3.5") throw new CliException(ExitCodes.Usage, "--quant applies to --family qwen3.5 only (DeepSeek families are written as their release is quantized)");
        long? target = r.GetValue(f.Size) is string s ? Units.ParseSize(s) : null;
        if (target is <= 0) throw new CliException(ExitCodes.Usage, "--size must be positive");
        long shardBytes = Units.ParseSize(r.GetValue(f.MaxShard)!);
        if (shardBytes <= 0) throw new CliException(ExitCodes.Usage, "--max-shard-size must be positive");
        foreach (var (name, v) in new[] { ("--layers", r.GetValue(f.Layers)), ("--hidden", r.GetValue(f.Hidden)), ("--experts", r.GetValue(f.Experts)), ("--vocab", r.GetValue(f.Vocab)) })
            if (v is <= 0) throw new CliException(ExitCodes.Usage, $"{name} must be positive");
        if (r.GetValue(f.Depth) < 0) throw new CliException(ExitCodes.Usage, "--mtp-depth must not be negative");
        var overrides = new SynthOverrides(r.GetValue(f.Layers), r.GetValue(f.Hidden), r.GetValue(f.Experts), r.GetValue(f.Vocab), r.GetValue(f.Depth));

        string outDir = r.GetValue(f.Output)!;
        if (File.Exists(outDir)) throw new CliException(ExitCodes.Usage, $"{outDir} is a file; synth writes a directory");
        var rules = f.Rules(r);
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
        SynthResult res = SynthWriter.WriteCheckpoint(plan, outDir, r.GetValue(f.Seed), shardBytes, rules, progress.Report);
        double secs = res.Elapsed.TotalSeconds;
        if (r.GetValue(f.Json))
            CliOutput.Document(new JsonObject
            {
                ["ok"] = true, ["family"] = fam, ["quant"] = q, ["output"] = outDir,
                ["tensors"] = res.Tensors, ["bytes"] = res.Bytes, ["shards"] = res.Shards, ["seconds"] = Math.Round(secs, 3),
                ["hidden"] = model.Hidden, ["layers"] = model.Layers, ["experts"] = model.Experts, ["vocab"] = model.Vocab, ["mtp_depth"] = model.MtpDepth,
            });
        else cli.Result(string.Create(CultureInfo.InvariantCulture,
            $"synth: wrote {outDir}: {res.Tensors} tensors, {res.Bytes} bytes ({Units.Bytes(res.Bytes)}), {Units.Count(res.Shards, "shard")}, {secs:0.00} s, {res.Bytes / 1e6 / Math.Max(secs, 1e-9):0} MB/s"));
        return ExitCodes.Ok;
    }
}
