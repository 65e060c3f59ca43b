using System.Diagnostics;
using System.Text.Json;
using System.Text.Json.Nodes;
using Mtp.Quant;
using Mtp.SafeTensors;

namespace Mtp.Adapters;

public static partial class Converter
{
    static readonly HashSet<string> NotCopied = new(StringComparer.Ordinal) { "config.json", ShardIndex.FileName, ReportFileName };

    static ConversionResult Execute(string direction, string inDir, string outDir, string family, ConvertOptions options, ConvertProgress? progress,
        Checkpoint src, List<PlannedTensor> outputs, IReadOnlyList<ShardPlan> shards, JsonObject config, List<(string, string)> dropped, List<string> carried,
        Dictionary<string, IReadOnlyDictionary<string, string>>? metadata, Stopwatch sw, JsonObject extra, string? refIndexPath, List<QuantPiece>? quantPieces = null)
    {
        var planTime = sw.Elapsed;
        var byName = outputs.ToDictionary(o => o.Name, StringComparer.Ordinal);
        long total = shards.Sum(s => s.Bytes);
        int threads = options.Threads > 0 ? options.Threads : Environment.ProcessorCount;
        progress?.Log?.Invoke($"{direction} {family}: {outputs.Count} tensors, {total:N0} bytes in {shards.Count} shard(s); {dropped.Count} dropped, {carried.Count} carried unknown");
        progress?.Started?.Invoke(total);

        string full = Path.GetFullPath(outDir).TrimEnd('/');
        string tmp = full + ".partial-" + Environment.ProcessId;
        try
        {
            if (Directory.Exists(tmp)) Directory.Delete(tmp, true);
            Directory.CreateDirectory(tmp);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new AdapterException(AdapterErrorKind.Io, $"{tmp}: cannot create the output: {e.Message}", e);
        }
        long written = 0;
        try
        {
            foreach (ShardPlan shard in shards)
            {
                IReadOnlyDictionary<string, string> md = metadata != null && metadata.TryGetValue(shard.FileName, out var m) ? m
                    : new Dictionary<string, string> { ["format"] = "pt" };
                using var writer = SafeTensorsWriter.Create(Path.Combine(tmp, shard.FileName), shard.Tensors, md);
                var work = shard.Tensors.SelectMany(t => byName[t.Name].Pieces.Select(p => (T: byName[t.Name], P: p))).ToList();
                int i = 0;
                while (i < work.Count)
                {
                    if (work[i].P.Direct is Src d)
                    {
                        var data = d.File.GetData(d.Info);
                        const int chunk = 1 << 26;
                        for (long off = 0; off < d.Length; off += chunk)
                        {
                            int n = (int)Math.Min(chunk, d.Length - off);
                            writer.Append(data.Slice(d.Offset + off, n));
                            written += n;
                            progress?.Advanced?.Invoke(n, work[i].T.Name);
                        }
                        i++;
                        continue;
                    }
                    int j = i;
                    long batchBytes = 0;
                    while (j < work.Count && work[j].P.Direct == null && (j == i || batchBytes + work[j].P.Bytes <= options.MaxMemoryBytes / 2) && j - i < 4 * threads)
                    {
                        batchBytes += work[j].P.Bytes;
                        j++;
                    }
                    var bufs = new byte[j - i][];
                    var k = new KernelOptions { MaxThreads = j - i == 1 ? threads : 1 };
                    try
                    {
                        Parallel.For(i, j, new ParallelOptions { MaxDegreeOfParallelism = threads }, idx =>
                        {
                            var (t, p) = work[idx];
                            var buf = new byte[p.Bytes];
                            try { p.Produce(buf, k); }
                            catch (Exception e) when (e is ArgumentException or InvalidDataException or InvalidOperationException)
                            {
                                throw new AdapterException(AdapterErrorKind.Malformed, $"tensor '{t.Name}' (from {string.Join(", ", t.Sources.Take(2))}): {e.Message.Replace('\n', ' ')}", e);
                            }
                            bufs[idx - i] = buf;
                        });
                    }
                    catch (AggregateException ae) when (ae.InnerExceptions.FirstOrDefault(x => x is AdapterException or SafeTensorsException) is Exception first)
                    {
                        throw first;
                    }
                    for (int b = 0; b < bufs.Length; b++)
                    {
                        writer.Append(bufs[b]);
                        written += bufs[b].Length;
                        progress?.Advanced?.Invoke(bufs[b].Length, work[i + b].T.Name);
                        bufs[b] = null!;
                    }
                    i = j;
                }
                writer.Complete();
                progress?.Log?.Invoke($"wrote {shard.FileName} ({shard.Tensors.Count} tensors, {shard.Bytes:N0} bytes)");
            }
            if (shards.Count > 1 || refIndexPath != null && File.Exists(refIndexPath))
            {
                JsonObject? extraMeta = refIndexPath != null && File.Exists(refIndexPath) ? ShardIndex.Read(refIndexPath).Metadata : null;
                var map = shards.SelectMany(s => s.Tensors.Select(t => new KeyValuePair<string, string>(t.Name, s.FileName)));
                ShardIndex.Write(Path.Combine(tmp, ShardIndex.FileName), total, map, extraMeta);
            }
            AtomicFile.WriteAllText(Path.Combine(tmp, "config.json"), config.ToJsonString(Indented) + "\n");
            CopyAuxiliary(src.Directory, tmp);
            if (options.Reference != null) CopyAuxiliary(options.Reference, tmp);
            sw.Stop();
            var report = BuildReport(direction, inDir, outDir, family, options, src, outputs, shards, dropped, carried, planTime, sw.Elapsed, written, extra, quantPieces);
            AtomicFile.WriteAllText(Path.Combine(tmp, ReportFileName), report.ToJsonString(Indented) + "\n");
            if (Directory.Exists(full)) Directory.Delete(full, true);
            Directory.Move(tmp, full);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            TryDelete(tmp);
            throw new AdapterException(AdapterErrorKind.Io, $"{outDir}: {e.Message}", e);
        }
        catch
        {
            TryDelete(tmp);
            throw;
        }
        var requant = quantPieces?.Where(q => !q.Unchanged && q.ChangedBlocks > 0).Select(q => (q.WeightName, q.ChangedBlocks)).ToList() ?? new();
        return new ConversionResult(full, family, outputs.Count, dropped, carried, written, shards.Select(s => s.FileName).ToList(), requant, sw.Elapsed);
    }

    static void TryDelete(string dir)
    {
        try { if (Directory.Exists(dir)) Directory.Delete(dir, true); } catch (IOException) { } catch (UnauthorizedAccessException) { }
    }

    static void CopyAuxiliary(string fromDir, string toDir)
    {
        if (!Directory.Exists(fromDir)) return;
        foreach (string f in Directory.GetFiles(fromDir))
        {
            string name = Path.GetFileName(f);
            if (NotCopied.Contains(name) || name.EndsWith(".safetensors", StringComparison.Ordinal) || name.Contains(".partial-")) continue;
            string dest = Path.Combine(toDir, name);
            if (!File.Exists(dest)) File.Copy(f, dest);
        }
    }

    static JsonArray Arr(IEnumerable<string> s) => new(s.Select(x => (JsonNode)JsonValue.Create(x)!).ToArray());
    static JsonArray Arr(IEnumerable<long> s) => new(s.Select(x => (JsonNode)JsonValue.Create(x)).ToArray());

    static JsonObject BuildReport(string direction, string inDir, string outDir, string family, ConvertOptions o, Checkpoint src, List<PlannedTensor> outputs,
        IReadOnlyList<ShardPlan> shards, List<(string, string)> dropped, List<string> carried, TimeSpan plan, TimeSpan totalTime, long written, JsonObject extra,
        List<QuantPiece>? quantPieces)
    {
        var byName = outputs.ToDictionary(x => x.Name, StringComparer.Ordinal);
        var fileOf = shards.SelectMany(s => s.Tensors.Select(t => (t.Name, s.FileName))).ToDictionary(x => x.Name, x => x.FileName, StringComparer.Ordinal);
        var r = new JsonObject
        {
            ["tool"] = "mtp convert",
            ["direction"] = direction,
            ["family"] = family,
            ["options"] = new JsonObject
            {
                ["dtype"] = o.DType?.Name(), ["expert_layout"] = o.PerExpertLayout ? "per-expert" : "stacked", ["allow_unknown"] = o.AllowUnknown,
                ["max_shard_bytes"] = o.MaxShardBytes, ["reference"] = o.Reference,
            },
            ["source"] = new JsonObject
            {
                ["path"] = Path.GetFullPath(inDir), ["tensors"] = src.Tensors.Count, ["bytes"] = src.TotalTensorBytes, ["files"] = src.Files.Count,
                ["dtype_counts"] = Counts(src.Tensors.Select(t => t.Info.DType)),
            },
            ["target"] = new JsonObject
            {
                ["path"] = Path.GetFullPath(outDir), ["tensors"] = outputs.Count, ["bytes"] = written, ["shards"] = Arr(shards.Select(s => s.FileName)),
                ["dtype_counts"] = Counts(outputs.Select(t => t.DType)),
            },
            ["timings"] = new JsonObject { ["plan_seconds"] = Math.Round(plan.TotalSeconds, 3), ["total_seconds"] = Math.Round(totalTime.TotalSeconds, 3) },
            ["bytes"] = new JsonObject { ["read"] = src.TotalTensorBytes, ["written"] = written },
            ["tensors"] = new JsonArray(shards.SelectMany(s => s.Tensors).Select(t => byName[t.Name]).Select(t => (JsonNode)new JsonObject
            {
                ["name"] = t.Name, ["dtype"] = t.DType.Name(), ["shape"] = Arr(t.Shape), ["file"] = fileOf[t.Name],
                ["sources"] = Arr(t.Sources.Distinct()), ["ops"] = Arr(t.Ops),
            }).ToArray()),
            ["dropped"] = new JsonArray(dropped.Select(d => (JsonNode)new JsonObject { ["name"] = d.Item1, ["reason"] = d.Item2 }).ToArray()),
            ["carried_unknown"] = Arr(carried),
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

    static JsonObject Counts(IEnumerable<DType> d)
    {
        var o = new JsonObject();
        foreach (var g in d.GroupBy(x => x).OrderBy(g => g.Key.Name(), StringComparer.Ordinal)) o[g.Key.Name()] = g.Count();
        return o;
    }
}
