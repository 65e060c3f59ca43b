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
                OutputTransaction.WriteAllText(Path.Combine(tmp, ReportFileName), report.ToJsonText());
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

    /// <summary>
    /// conversion.json of <paramref name="plan"/>: options, source, target, timings, every tensor with its sources and ops,
    /// what was dropped or carried, then the plan's extra fields; <paramref name="withQuant"/> adds what re-quantizing did.
    /// </summary>
    internal static ReportDocument BuildReport(ConversionPlan plan, TimeSpan totalTime, long written, bool withQuant)
    {
        ConvertOptions o = plan.Options;
        var quantPieces = withQuant ? plan.QuantPieces : null;
        var byName = plan.Outputs.ToDictionary(x => x.Name, StringComparer.Ordinal);
        var extra = new Dictionary<string, object?>(StringComparer.Ordinal);
        foreach (var kv in plan.Extra) extra[kv.Key] = kv.Value;
        return new ReportDocument
        {
            Direction = plan.Direction.Name(),
            Family = plan.Family,
            Options = new ReportOptions(o.DType?.Name(), o.PerExpertLayout ? "per-expert" : "stacked", o.AllowUnknown, o.MaxShardBytes, o.Reference),
            Source = SourceSummary(plan.InDir, plan.Source),
            Target = new ReportTarget(Path.GetFullPath(plan.OutDir), plan.Outputs.Count, written, plan.Shards.Select(s => s.FileName).ToList(),
                Counts(plan.Outputs.Select(t => t.DType))),
            Timings = new ReportTimings(Math.Round(plan.PlanTime.TotalSeconds, 3), Math.Round(totalTime.TotalSeconds, 3)),
            Bytes = new ReportBytes(plan.Source.TotalTensorBytes, written),
            Tensors = plan.Shards.SelectMany(s => s.Tensors.Select(t => (t.Name, s.FileName))).Select(x => (T: byName[x.Name], File: x.FileName))
                .Select(x => new ReportTensor(x.T.Name, x.T.DType.Name(), x.T.Shape, x.File, x.T.Sources.Distinct().ToList(), x.T.Ops.ToList())).ToList(),
            Dropped = plan.Dropped.Select(d => new ReportDropped(d.Item1, d.Item2)).ToList(),
            CarriedUnknown = plan.Carried.ToList(),
            ReferenceUse = quantPieces != null && o.Reference != null
                ? new ReportReferenceUse(quantPieces.Count(q => q.Exact), quantPieces.Count(q => q.ReadReferenceCodes)) : null,
            Requantized = quantPieces?.Where(q => !q.Unchanged).Select(q => new ReportRequantized(q.WeightName, q.ChangedBlocks)).ToList(),
            Extra = extra,
        };
    }

    /// <summary>The report's <c>source</c> object: where the input is and what it holds.</summary>
    internal static ReportCheckpoint SourceSummary(string inDir, Checkpoint src) =>
        new(Path.GetFullPath(inDir), src.Tensors.Count, src.TotalTensorBytes, src.Files.Count, Counts(src.Tensors.Select(t => t.Info.DType)));

    // Tensors per dtype, in dtype-name order (a Dictionary serializes in insertion order).
    static Dictionary<string, int> Counts(IEnumerable<DType> d) =>
        d.GroupBy(x => x).OrderBy(g => g.Key.Name(), StringComparer.Ordinal).ToDictionary(g => g.Key.Name(), g => g.Count());
}
