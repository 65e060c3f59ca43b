using System.Diagnostics;
using System.Runtime.InteropServices;
using System.Text.Json;
using System.Text.Json.Nodes;
using Mtp.Quant;
using Mtp.SafeTensors;

namespace Mtp.Adapters;

public static partial class Converter
{
    /// <summary>Writes <paramref name="plan"/> (or its <see cref="ConvertOptions.Part"/>) and returns what was done.</summary>
    static ConversionResult Execute(ConversionPlan plan, ConvertProgress? progress)
    {
        long total = plan.TotalBytes;
        progress?.Log?.Invoke($"{plan.Direction.Name()} {plan.Family}: {plan.Outputs.Count} tensors, {total:N0} bytes in {plan.Shards.Count} shard(s); {plan.Dropped.Count} dropped, {plan.Carried.Count} carried unknown");
        progress?.Started?.Invoke(total);
        if (plan.Options.Part is { } part) return PartExecution.Run(plan, part, progress);
        long written = 0;
        // Planned: the shard files' exact sizes (the JSON files are small enough to leave out).
        long planned = plan.Shards.Sum(plan.ShardFileSize);
        using OutputTransaction txn = BeginOutput(plan.InDir, plan.OutDir, plan.Options, planned);
        try
        {
            txn.Run(tmp =>
            {
                written = new ShardPipeline(plan, plan.Shards, tmp, progress).Run();
                if (plan.WritesIndex) WriteIndex(Path.Combine(tmp, ShardIndex.FileName), plan.Shards, total, plan.IndexMetadata());
                OutputTransaction.WriteAllText(Path.Combine(tmp, "config.json"), plan.Config.ToJsonString(Indented) + "\n");
                foreach (string aux in plan.AuxiliarySources) AuxiliaryFiles.Copy(aux, tmp, plan.FullOutDir);
                plan.Clock.Stop();
                var report = BuildReport(plan, plan.Clock.Elapsed, written, withQuant: true);
                OutputTransaction.WriteAllText(Path.Combine(tmp, ReportFileName), report.ToJsonString(Indented) + "\n");
                return written;
            });
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new AdapterException(AdapterErrorKind.Io, $"{plan.OutDir}: {e.Message}", e);
        }
        return new ConversionResult
        {
            OutputDirectory = plan.FullOutDir, Family = plan.Family, TensorsWritten = plan.Outputs.Count, Dropped = plan.Dropped,
            CarriedUnknown = plan.Carried, BytesWritten = written, Shards = plan.Shards.Select(s => s.FileName).ToList(),
            Requantized = plan.Requantized(), Elapsed = plan.Clock.Elapsed,
        };
    }

    /// <summary>Writes the shard index: every tensor of <paramref name="shards"/> mapped to its file.</summary>
    internal static void WriteIndex(string path, IEnumerable<ShardPlan> shards, long total, JsonObject? metadata)
    {
        var map = shards.SelectMany(s => s.Tensors.Select(t => new KeyValuePair<string, string>(t.Name, s.FileName)));
        ShardIndex.Write(path, total, map, metadata);
    }

    internal static JsonArray Arr(IEnumerable<string> s) => new(s.Select(x => (JsonNode)JsonValue.Create(x)!).ToArray());
    internal static JsonArray Arr(IEnumerable<long> s) => new(s.Select(x => (JsonNode)JsonValue.Create(x)).ToArray());

    /// <summary>
    /// conversion.json of <paramref name="plan"/>: options, source, target, timings, every tensor with its sources and ops,
    /// what was dropped or carried, then the plan's extra fields; <paramref name="withQuant"/> adds what re-quantizing did.
    /// </summary>
    internal static JsonObject BuildReport(ConversionPlan plan, TimeSpan totalTime, long written, bool withQuant)
    {
        ConvertOptions o = plan.Options;
        var shards = plan.Shards;
        var outputs = plan.Outputs;
        var extra = plan.Extra;
        var quantPieces = withQuant ? plan.QuantPieces : null;
        var src = plan.Source;
        var byName = outputs.ToDictionary(x => x.Name, StringComparer.Ordinal);
        var fileOf = shards.SelectMany(s => s.Tensors.Select(t => (t.Name, s.FileName))).ToDictionary(x => x.Name, x => x.FileName, StringComparer.Ordinal);
        var r = new JsonObject
        {
            ["tool"] = "mtp convert",
            ["direction"] = plan.Direction.Name(),
            ["family"] = plan.Family,
            ["options"] = new JsonObject
            {
                ["dtype"] = o.DType?.Name(), ["expert_layout"] = o.PerExpertLayout ? "per-expert" : "stacked", ["allow_unknown"] = o.AllowUnknown,
                ["max_shard_bytes"] = o.MaxShardBytes, ["reference"] = o.Reference,
            },
            ["source"] = SourceSummary(plan.InDir, src),
            ["target"] = new JsonObject
            {
                ["path"] = Path.GetFullPath(plan.OutDir), ["tensors"] = outputs.Count, ["bytes"] = written, ["shards"] = Arr(shards.Select(s => s.FileName)),
                ["dtype_counts"] = Counts(outputs.Select(t => t.DType)),
            },
            ["timings"] = new JsonObject { ["plan_seconds"] = Math.Round(plan.PlanTime.TotalSeconds, 3), ["total_seconds"] = Math.Round(totalTime.TotalSeconds, 3) },
            ["bytes"] = new JsonObject { ["read"] = src.TotalTensorBytes, ["written"] = written },
            ["tensors"] = new JsonArray(shards.SelectMany(s => s.Tensors).Select(t => byName[t.Name]).Select(t => (JsonNode)new JsonObject
            {
                ["name"] = t.Name, ["dtype"] = t.DType.Name(), ["shape"] = Arr(t.Shape), ["file"] = fileOf[t.Name],
                ["sources"] = Arr(t.Sources.Distinct()), ["ops"] = Arr(t.Ops),
            }).ToArray()),
            ["dropped"] = new JsonArray(plan.Dropped.Select(d => (JsonNode)new JsonObject { ["name"] = d.Item1, ["reason"] = d.Item2 }).ToArray()),
            ["carried_unknown"] = Arr(plan.Carried),
        };
        if (quantPieces != null && o.Reference != null)
            r["reference_use"] = new JsonObject
            {
                ["reencoded_exactly_from_scales"] = quantPieces.Count(q => q.Exact),
                ["compared_with_reference_codes"] = quantPieces.Count(q => q.ReadReferenceCodes),
            };
        if (quantPieces != null)
            r["requantized"] = new JsonArray(quantPieces.Where(q => !q.Unchanged).Select(q => (JsonNode)new JsonObject { ["name"] = q.WeightName, ["new_scale_blocks"] = q.ChangedBlocks }).ToArray());
        foreach (var kv in extra.ToList())
        {
            extra.Remove(kv.Key);
            r[kv.Key] = kv.Value;
        }
        return r;
    }

    /// <summary>The report's <c>source</c> object: where the input is and what it holds.</summary>
    internal static JsonObject SourceSummary(string inDir, Checkpoint src) => new()
    {
        ["path"] = Path.GetFullPath(inDir), ["tensors"] = src.Tensors.Count, ["bytes"] = src.TotalTensorBytes, ["files"] = src.Files.Count,
        ["dtype_counts"] = Counts(src.Tensors.Select(t => t.Info.DType)),
    };

    static JsonObject Counts(IEnumerable<DType> d)
    {
        var o = new JsonObject();
        foreach (var g in d.GroupBy(x => x).OrderBy(g => g.Key.Name(), StringComparer.Ordinal)) o[g.Key.Name()] = g.Count();
        return o;
    }
}
