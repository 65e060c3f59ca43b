using System.Diagnostics;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Mtp.Quant;
using Mtp.SafeTensors;

namespace Mtp.Adapters;

/// <summary>
/// Split conversions: <c>--part i/n</c> writes the i-th of n disjoint, contiguous sets of output shards straight into OUT,
/// then <c>OUT/.mtp-parts/plan-HASH.json</c> (the whole plan: shard sizes, index, config, report) and
/// <c>OUT/.mtp-parts/part-i-of-n.json</c> (what this part wrote), each atomically. <see cref="MergeParts"/> checks that all n
/// manifests exist and agree on the plan hash and that every shard has its planned size, then writes the index, config.json
/// and conversion.json (last: it marks OUT complete) and removes <c>.mtp-parts</c>.
/// </summary>
public static partial class Converter
{
    /// <summary>Directory inside OUT that holds the part manifests until the merge.</summary>
    public const string PartsDirName = ".mtp-parts";
    const string PartsFormat = "mtp-parts/1";

    /// <summary>The part (1-based) that writes shard <paramref name="shard"/> (0-based) of <paramref name="shards"/>, of <paramref name="parts"/>: contiguous runs.</summary>
    public static int PartOfShard(int shard, int shards, int parts) => (int)((long)shard * parts / Math.Max(1, shards)) + 1;

    /// <summary>The manifest file name of part <paramref name="i"/> of <paramref name="n"/>.</summary>
    public static string PartManifestName(int i, int n) => $"part-{i}-of-{n}.json";

    static IReadOnlyDictionary<string, string> ShardMetadata(Dictionary<string, IReadOnlyDictionary<string, string>>? metadata, string file) =>
        metadata != null && metadata.TryGetValue(file, out var m) ? m : new Dictionary<string, string> { ["format"] = "pt" };

    static ConversionResult ExecutePart((int Index, int Count) part, string direction, string inDir, string outDir, string full, string family, ConvertOptions options,
        ConvertProgress? progress, Checkpoint src, List<PlannedTensor> outputs, IReadOnlyList<ShardPlan> shards, JsonObject config, List<(string, string)> dropped,
        List<string> carried, Dictionary<string, IReadOnlyDictionary<string, string>>? metadata, Stopwatch sw, JsonObject extra, string? refIndexPath,
        List<QuantPiece>? quantPieces, TimeSpan planTime, Dictionary<string, PlannedTensor> byName, int threads)
    {
        var (i, n) = part;
        // A part without a shard would exit having done nothing, and the merge would wait for parts that never come.
        if (n > shards.Count)
            throw new AdapterException(AdapterErrorKind.Usage,
                $"--part {i}/{n}: the plan has {shards.Count} shard(s), so at most {shards.Count} part(s); use --part I/{shards.Count} (or a smaller --max-shard-size)");
        long total = shards.Sum(s => s.Bytes);
        var shardArr = new JsonArray();
        for (int k = 0; k < shards.Count; k++)
        {
            var s = shards[k];
            long size = 8L + SafeTensorsWriter.BuildHeader(s.Tensors, ShardMetadata(metadata, s.FileName)).Length + s.Bytes;
            shardArr.Add(new JsonObject
            {
                ["file"] = s.FileName, ["size"] = size,
                ["tensors"] = new JsonArray(s.Tensors.Select(t => (JsonNode)new JsonObject
                {
                    ["name"] = t.Name, ["dtype"] = t.DType.Name(), ["shape"] = Arr(t.Shape),
                }).ToArray()),
            });
        }
        bool writeIndex = shards.Count > 1 || refIndexPath != null && File.Exists(refIndexPath);
        JsonObject? extraMeta = refIndexPath != null && File.Exists(refIndexPath) ? ShardIndex.Read(refIndexPath).Metadata : null;
        var hashInput = new JsonObject
        {
            ["format"] = PartsFormat, ["direction"] = direction, ["family"] = family,
            ["options"] = new JsonObject { ["dtype"] = options.DType?.Name(), ["per_expert"] = options.PerExpertLayout, ["allow_unknown"] = options.AllowUnknown, ["max_shard_bytes"] = options.MaxShardBytes },
            // How scales are encoded decides their bytes (power-of-two F32 under ue8m0), on both sides of the conversion.
            ["scale_fmt"] = ScaleFmtText(extra["source_quantization_config"] as JsonObject) ?? ScaleFmtText(QuantConfigOf(config)),
            ["source_files"] = new JsonArray(src.Files.Select(f => (JsonNode)new JsonObject { ["file"] = Path.GetFileName(f.Path), ["size"] = f.FileLength }).ToArray()),
            ["shards"] = shardArr, ["index_metadata"] = extraMeta?.DeepClone(), ["write_index"] = writeIndex, ["config"] = config.DeepClone(),
        };
        string hash = Convert.ToHexString(SHA256.HashData(Encoding.UTF8.GetBytes(hashInput.ToJsonString()))).ToLowerInvariant();

        var mine = shards.Where((s, k) => PartOfShard(k, shards.Count, n) == i).ToList();
        string partsDir = Path.Combine(full, PartsDirName);
        var myNames = new HashSet<string>(mine.SelectMany(s => s.Tensors.Select(t => t.Name)), StringComparer.Ordinal);
        long written;
        if (!options.SkipSpaceCheck)
            AsAdapterError(() => { Directory.CreateDirectory(full); OutputFolder.CheckSpace(outDir, full, mine.Sum(s => s.Bytes)); });
        try
        {
            Directory.CreateDirectory(partsDir);
            progress?.Log?.Invoke($"part {i}/{n}: {mine.Count} of {shards.Count} shard(s), {mine.Sum(s => s.Bytes):N0} bytes (plan {hash[..12]})");
            written = WriteShards(mine, full, byName, metadata, options, threads, progress);
            var report = BuildReport(direction, inDir, outDir, family, options, src, outputs, shards, dropped, carried, planTime, TimeSpan.Zero, total, extra, null);
            var plan = new JsonObject
            {
                ["format"] = PartsFormat, ["plan_hash"] = hash, ["direction"] = direction, ["family"] = family, ["total_bytes"] = total,
                ["tensors"] = outputs.Count, ["shards"] = shardArr.DeepClone(), ["write_index"] = writeIndex, ["index_metadata"] = extraMeta?.DeepClone(),
                ["config"] = config.DeepClone(), ["report"] = report, ["requantize"] = quantPieces != null,
                ["aux_sources"] = new JsonArray(new[] { src.Directory, options.Reference }.Where(x => x != null).Select(x => (JsonNode)Path.GetFullPath(x!)).ToArray()),
            };
            WriteAtomic(Path.Combine(partsDir, $"plan-{hash}.json"), plan.ToJsonString());
            sw.Stop();
            var manifest = new JsonObject
            {
                ["format"] = PartsFormat, ["plan_hash"] = hash, ["part"] = i, ["parts"] = n,
                ["shards"] = new JsonArray(mine.Select(s => (JsonNode)s.FileName).ToArray()),
                [TiedCopies.ManifestKey] = report[TiedCopies.ManifestKey]?.DeepClone(),
                ["bytes_written"] = written, ["seconds"] = Math.Round(sw.Elapsed.TotalSeconds, 3), ["host"] = Environment.MachineName,
                ["requantized"] = new JsonArray((quantPieces ?? new()).Where(q => myNames.Contains(q.WeightName) && !q.Unchanged)
                    .Select(q => (JsonNode)new JsonObject { ["name"] = q.WeightName, ["new_scale_blocks"] = q.ChangedBlocks }).ToArray()),
            };
            WriteAtomic(Path.Combine(partsDir, PartManifestName(i, n)), manifest.ToJsonString(Indented) + "\n");
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new AdapterException(AdapterErrorKind.Io, $"{outDir}: {e.Message}", e);
        }
        var requant = quantPieces?.Where(q => myNames.Contains(q.WeightName) && !q.Unchanged && q.ChangedBlocks > 0).Select(q => (q.WeightName, q.ChangedBlocks)).ToList() ?? new();
        return new ConversionResult(full, family, mine.Sum(s => s.Tensors.Count), dropped, carried, written, mine.Select(s => s.FileName).ToList(), requant, sw.Elapsed);
    }

    static void WriteAtomic(string path, string text)
    {
        string tmp = $"{path}.tmp-{Guid.NewGuid():N}";
        using (var fs = new FileStream(tmp, FileMode.CreateNew, FileAccess.Write))
        {
            fs.Write(Encoding.UTF8.GetBytes(text));
            fs.Flush(flushToDisk: true);
        }
        File.Move(tmp, path, overwrite: true);
    }

    /// <summary>
    /// Completes a checkpoint converted with <c>--part i/n</c>: refuses (one line) when a part is missing, was converted from
    /// another plan, or a shard is missing or of the wrong size; otherwise writes the index, config.json and conversion.json.
    /// </summary>
    /// <exception cref="AdapterException">Usage (no parts), Inconsistent (missing or disagreeing parts, shards), I/O.</exception>
    public static ConversionResult MergeParts(string outDir)
    {
        var sw = Stopwatch.StartNew();
        string full = Path.GetFullPath(outDir).TrimEnd('/');
        string partsDir = Path.Combine(full, PartsDirName);
        if (!Directory.Exists(partsDir))
            throw new AdapterException(AdapterErrorKind.Usage, File.Exists(Path.Combine(full, ReportFileName))
                ? $"{outDir}: already complete (has {ReportFileName}; no {PartsDirName}/ to merge)"
                : $"{outDir}: no {PartsDirName}/ with part manifests (run mtp convert ... --part i/n first)");
        try
        {
            var manifests = new List<(string File, JsonObject M)>();
            foreach (string f in Directory.GetFiles(partsDir, "part-*-of-*.json").Order(StringComparer.Ordinal))
            {
                try { manifests.Add((f, JsonNode.Parse(File.ReadAllText(f)) as JsonObject ?? throw new JsonException("not an object"))); }
                catch (JsonException e) { throw new AdapterException(AdapterErrorKind.Malformed, $"{f}: not valid JSON: {e.Message.Replace('\n', ' ')}"); }
            }
            if (manifests.Count == 0)
                throw new AdapterException(AdapterErrorKind.Inconsistent, $"{outDir}: no part has finished ({PartsDirName}/ holds no part-i-of-n.json)");
            var counts = manifests.Select(m => Int(m.M, "parts", m.File)).Distinct().ToList();
            if (counts.Count > 1)
                throw new AdapterException(AdapterErrorKind.Inconsistent, $"{outDir}: part manifests disagree on the number of parts ({string.Join(", ", counts.Order())}): remove the stale ones and rerun");
            int n = counts[0];
            var have = manifests.ToDictionary(m => Int(m.M, "part", m.File), m => m);
            var missingParts = Enumerable.Range(1, n).Where(i => !have.ContainsKey(i)).ToList();
            if (missingParts.Count > 0)
                throw new AdapterException(AdapterErrorKind.Inconsistent,
                    $"{outDir}: {missingParts.Count} of {n} part(s) missing: {string.Join(", ", missingParts.Select(i => $"{i}/{n}"))} (no {PartsDirName}/{PartManifestName(missingParts[0], n)}; rerun mtp convert ... --part {missingParts[0]}/{n})");
            var hashes = manifests.Select(m => m.M["plan_hash"]?.GetValue<string>() ?? "").Distinct().ToList();
            if (hashes.Count > 1)
                throw new AdapterException(AdapterErrorKind.Inconsistent,
                    $"{outDir}: parts were converted from different plans (input, options or version differ): " +
                    string.Join("; ", hashes.Select(h => $"{h[..Math.Min(12, h.Length)]}: parts {string.Join(",", manifests.Where(m => m.M["plan_hash"]?.GetValue<string>() == h).Select(m => Int(m.M, "part", m.File)))}")));
            string hash = hashes[0];
            string planPath = Path.Combine(partsDir, $"plan-{hash}.json");
            if (!File.Exists(planPath)) throw new AdapterException(AdapterErrorKind.Inconsistent, $"{planPath}: missing (the parts' plan)");
            var plan = JsonNode.Parse(File.ReadAllText(planPath)) as JsonObject ?? throw new AdapterException(AdapterErrorKind.Malformed, $"{planPath}: not a JSON object");
            var shards = plan["shards"]!.AsArray().Select(x => (File: x!["file"]!.GetValue<string>(), Size: x["size"]!.GetValue<long>(), Tensors: x["tensors"]!.AsArray())).ToList();
            for (int i = 1; i <= n; i++)
            {
                var want = shards.Where((s, k) => PartOfShard(k, shards.Count, n) == i).Select(s => s.File).ToList();
                var got = have[i].M["shards"]?.AsArray().Select(x => x!.GetValue<string>()).ToList() ?? new();
                if (!want.SequenceEqual(got))
                    throw new AdapterException(AdapterErrorKind.Inconsistent, $"{have[i].File}: lists shards {NameList.Cut(got, 4)} but part {i}/{n} of the plan is {NameList.Cut(want, 4)}")
                    { File = have[i].File, Names = want };
            }
            var bad = new List<string>();
            foreach (var s in shards)
            {
                var fi = new FileInfo(Path.Combine(full, s.File));
                if (!fi.Exists) bad.Add($"{s.File} missing");
                else if (fi.Length != s.Size) bad.Add($"{s.File} has {fi.Length:N0} bytes, planned {s.Size:N0}");
            }
            if (bad.Count > 0) throw new AdapterException(AdapterErrorKind.Inconsistent, $"{outDir}: {bad.Count} shard(s) wrong: {NameList.Cut(bad, 5)}") { File = outDir, Names = bad };
            var planned = new HashSet<string>(shards.Select(s => s.File), StringComparer.Ordinal);
            var stray = Directory.GetFiles(full, "*.safetensors").Select(Path.GetFileName).Where(f => !planned.Contains(f!)).Select(f => f!).Order(StringComparer.Ordinal).ToList();
            if (stray.Count > 0)
                throw new AdapterException(AdapterErrorKind.Inconsistent, $"{outDir}: {stray.Count} shard file(s) not in the plan (left from another run? remove them): {NameList.Cut(stray, 5)}") { File = outDir, Names = stray };

            long total = plan["total_bytes"]!.GetValue<long>();
            if (plan["write_index"]?.GetValue<bool>() == true)
            {
                var map = shards.SelectMany(s => s.Tensors.Select(t => new KeyValuePair<string, string>(t!["name"]!.GetValue<string>(), s.File)));
                ShardIndex.Write(Path.Combine(full, ShardIndex.FileName), total, map, plan["index_metadata"] as JsonObject);
            }
            AtomicFile.WriteAllText(Path.Combine(full, "config.json"), plan["config"]!.ToJsonString(Indented) + "\n");
            foreach (var aux in plan["aux_sources"]?.AsArray() ?? new JsonArray()) CopyAuxiliary(aux!.GetValue<string>(), full);
            var report = (JsonObject)plan["report"]!.DeepClone();
            var secs = Enumerable.Range(1, n).Select(i => have[i].M["seconds"]?.GetValue<double>() ?? 0).ToList();
            var requant = Enumerable.Range(1, n).SelectMany(i => have[i].M["requantized"]?.AsArray() ?? new JsonArray()).Select(x => (JsonObject)x!.DeepClone()).ToList();
            if (plan["requantize"]?.GetValue<bool>() == true)
            {
                var pos = report["tensors"]!.AsArray().Select((t, k) => (t!["name"]!.GetValue<string>(), k)).ToDictionary(x => x.Item1, x => x.k, StringComparer.Ordinal);
                report["requantized"] = new JsonArray(requant.OrderBy(r => pos.GetValueOrDefault(r["name"]!.GetValue<string>(), int.MaxValue)).Select(r => (JsonNode)r).ToArray());
            }
            report["timings"] = new JsonObject
            {
                ["plan_seconds"] = report["timings"]?["plan_seconds"]?.DeepClone(), ["total_seconds"] = Math.Round(secs.Max(), 3),
                ["part_seconds"] = new JsonArray(secs.Select(x => (JsonNode)x).ToArray()),
            };
            report["parts"] = new JsonObject { ["count"] = n, ["plan_hash"] = hash, ["hosts"] = new JsonArray(Enumerable.Range(1, n).Select(i => have[i].M["host"]?.DeepClone()).ToArray()) };
            foreach (string f in Directory.GetFiles(full).Where(f => Path.GetFileName(f).Contains(".partial-"))) File.Delete(f);
            AtomicFile.WriteAllText(Path.Combine(full, ReportFileName), report.ToJsonString(Indented) + "\n");
            Directory.Delete(partsDir, true);
            sw.Stop();
            var dropped = report["dropped"]?.AsArray().Select(d => (d!["name"]!.GetValue<string>(), d["reason"]!.GetValue<string>())).ToList() ?? new();
            var carried = report["carried_unknown"]?.AsArray().Select(c => c!.GetValue<string>()).ToList() ?? new();
            var req = requant.Where(r => r["new_scale_blocks"]!.GetValue<int>() > 0).Select(r => (r["name"]!.GetValue<string>(), r["new_scale_blocks"]!.GetValue<int>())).ToList();
            return new ConversionResult(full, plan["family"]!.GetValue<string>(), plan["tensors"]!.GetValue<int>(), dropped, carried, total,
                shards.Select(s => s.File).ToList(), req, sw.Elapsed);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new AdapterException(AdapterErrorKind.Io, $"{outDir}: {e.Message}", e);
        }
        catch (Exception e) when (e is JsonException or InvalidOperationException or NullReferenceException or FormatException)
        {
            throw new AdapterException(AdapterErrorKind.Malformed, $"{partsDir}: malformed manifest: {e.Message.Replace('\n', ' ')}", e);
        }
    }

    static int Int(JsonObject m, string key, string file) =>
        m[key] is JsonValue v && v.TryGetValue(out int x) ? x : throw new AdapterException(AdapterErrorKind.Malformed, $"{file}: no integer '{key}'");
}
