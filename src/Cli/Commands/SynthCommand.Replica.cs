using System.CommandLine;
using System.Globalization;
using System.Text.Json.Nodes;
using Mtp.Adapters.Synthetic;
using Mtp.SafeTensors;

namespace Mtp.Cli.Commands;

public static partial class SynthCommand
{
    // mtp synth --like CONFIG.json [--index MAP] --sparse [--header-only | --no-fp4-scales] OUT
    static int Replica(ParseResult r, SynthFlags f, string likePath)
    {
        if (!r.GetValue(f.Sparse)) throw new CliException(ExitCodes.Usage, "--like writes a sparse replica: add --sparse (a dense copy of a released checkpoint's size is what --family F --size S is for)");
        foreach (var (name, given) in new[] { ("--family", r.GetValue(f.Family) is not null), ("--size", r.GetValue(f.Size) is not null), ("--layers", r.GetValue(f.Layers) is not null),
            ("--hidden", r.GetValue(f.Hidden) is not null), ("--experts", r.GetValue(f.Experts) is not null), ("--vocab", r.GetValue(f.Vocab) is not null), ("--quant", r.GetValue(f.Quant) is not null) })
            if (given) throw new CliException(ExitCodes.Usage, $"{name} does not apply to --like: the released config.json fixes the family and every dimension");
        if (r.GetValue(f.HeaderOnly) && r.GetValue(f.NoFp4Scales)) throw new CliException(ExitCodes.Usage, "--header-only already leaves every scale as a hole; drop --no-fp4-scales");
        if (!File.Exists(likePath)) throw new CliException(ExitCodes.Usage, $"{likePath}: no such file (--like takes a released config.json)");
        byte[] configBytes = File.ReadAllBytes(likePath);
        JsonObject cfg;
        try { cfg = JsonNode.Parse(configBytes) as JsonObject ?? throw new CliException(ExitCodes.Malformed, $"{likePath}: not a JSON object"); }
        catch (System.Text.Json.JsonException e) { throw new CliException(ExitCodes.Malformed, $"{likePath}: not valid JSON: {e.Message}"); }
        SynthModel model;
        SynthPlan plan;
        try { model = SynthLike.FromConfig(cfg, likePath); plan = model.Build(); }
        catch (ArgumentException e) { throw new CliException(ExitCodes.Malformed, e.Message); }
        string? indexPath = r.GetValue(f.Index);
        ShardIndex? map = null;
        if (indexPath is not null)
        {
            if (!File.Exists(indexPath)) throw new CliException(ExitCodes.Usage, $"{indexPath}: no such file (--index takes a model.safetensors.index.json)");
            map = ShardIndex.Read(indexPath);
        }
        long shardBytes = Units.ParseSize(r.GetValue(f.MaxShard)!);
        if (shardBytes <= 0) throw new CliException(ExitCodes.Usage, "--max-shard-size must be positive");
        IReadOnlyList<ShardPlan> shards;
        List<string> skipped;
        try { shards = ReplicaWriter.Layout(plan, map, indexPath, shardBytes, out skipped); }
        catch (ArgumentException e) { throw new CliException(ExitCodes.Malformed, e.Message); }
        var data = r.GetValue(f.HeaderOnly) ? ReplicaData.HeadersOnly : r.GetValue(f.NoFp4Scales) ? ReplicaData.BlockScales : ReplicaData.Scales;
        string outDir = r.GetValue(f.Output)!;
        if (File.Exists(outDir)) throw new CliException(ExitCodes.Usage, $"{outDir} is a file; synth writes a directory");
        var rules = f.Rules(r);
        var cli = CliOutput.Current;
        cli.Info($"synth: replica of {likePath} ({plan.Family}{(model is Qwen35Synth { Fp8: true } ? ", fp8" : "")}): {plan.Tensors.Count:N0} tensors, {Units.Bytes(plan.TotalBytes)} in {Units.Count(shards.Count, "shard")}");
        if (skipped.Count > 0)
            cli.Warn($"{indexPath}: {Units.Count(skipped.Count, "tensor")} of the weight map are not in the family's tensor list and are not written (first: '{skipped[0]}')");
        var progress = new TimedProgress("synth", cli.Info, cli.InteractiveProgress ? TimeSpan.FromSeconds(1) : null);
        ReplicaResult res = ReplicaWriter.WriteCheckpoint(plan, shards, configBytes, outDir, r.GetValue(f.Seed), data, skipped, rules, progress.Report);
        double secs = res.Elapsed.TotalSeconds;
        if (r.GetValue(f.Json))
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
