using System.Diagnostics;
using System.Text.Json;
using System.Text.Json.Nodes;
using Mtp.SafeTensors;

namespace Mtp.Adapters;

/// <summary>
/// <c>--merge-index</c>: completes a checkpoint converted with <c>--part i/n</c> once every part is done. Reads the part
/// manifests and the plan as typed documents (a missing or mistyped field is one Malformed error naming the file), checks
/// that all n parts exist and agree on the plan hash and that every shard has its planned size, then writes the index,
/// config.json and conversion.json (last: it marks OUT complete) and removes <c>.mtp-parts</c>.
/// </summary>
internal sealed class PartMerge
{
    static readonly JsonSerializerOptions Strict = new() { RespectNullableAnnotations = true, RespectRequiredConstructorParameters = true };
    static readonly JsonSerializerOptions Indented = new() { WriteIndented = true };

    readonly string _outDir, _full, _partsDir;
    readonly List<(string File, PartManifest M)> _manifests = new();
    Dictionary<int, (string File, PartManifest M)> _have = new();
    int _n;

    PartMerge(string outDir)
    {
        _outDir = outDir;
        _full = Path.GetFullPath(outDir).TrimEnd('/');
        _partsDir = Path.Combine(_full, Converter.PartsDirName);
    }

    /// <summary>Merges the parts in <paramref name="outDir"/> (see <see cref="Converter.MergeParts"/>).</summary>
    public static ConversionResult Run(string outDir)
    {
        var sw = Stopwatch.StartNew();
        var m = new PartMerge(outDir);
        if (!Directory.Exists(m._partsDir))
            throw new AdapterException(AdapterErrorKind.Usage, File.Exists(Path.Combine(m._full, Converter.ReportFileName))
                ? $"{outDir}: already complete (has {Converter.ReportFileName}; no {Converter.PartsDirName}/ to merge)"
                : $"{outDir}: no {Converter.PartsDirName}/ with part manifests (run mtp convert ... --part i/n first)");
        try { return m.Merge(sw); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new AdapterException(AdapterErrorKind.Io, $"{outDir}: {e.Message}", e);
        }
    }

    ConversionResult Merge(Stopwatch sw)
    {
        ReadManifests();
        string hash = CheckPlanHashes();
        string planPath = Path.Combine(_partsDir, $"plan-{hash}.json");
        if (!File.Exists(planPath)) throw new AdapterException(AdapterErrorKind.Inconsistent, $"{planPath}: missing (the parts' plan)");
        PartPlanDocument plan = Read<PartPlanDocument>(planPath);
        CheckShards(plan.Shards);
        if (plan.WriteIndex)
        {
            var map = plan.Shards.SelectMany(s => s.Tensors.Select(t => new KeyValuePair<string, string>(t.Name, s.File)));
            ShardIndex.Write(Path.Combine(_full, ShardIndex.FileName), plan.TotalBytes, map, plan.IndexMetadata);
        }
        OutputTransaction.WriteAllText(Path.Combine(_full, "config.json"), plan.Config.ToJsonString(Indented) + "\n");
        foreach (string aux in plan.AuxSources) AuxiliaryFiles.Copy(aux, _full);
        ReportDocument report = MergedReport(plan, hash);
        foreach (string f in Directory.GetFiles(_full).Where(f => Path.GetFileName(f).Contains(".partial-"))) File.Delete(f);
        OutputTransaction.WriteAllText(Path.Combine(_full, Converter.ReportFileName), report.ToJsonText());
        Directory.Delete(_partsDir, true);
        sw.Stop();
        var dropped = report.Dropped.Select(d => (d.Name, d.Reason)).ToList();
        var carried = report.CarriedUnknown.ToList();
        var requant = Requantized().Where(r => r.NewScaleBlocks > 0).Select(r => (r.Name, r.NewScaleBlocks)).ToList();
        return new ConversionResult
        {
            OutputDirectory = _full, Family = plan.Family, TensorsWritten = plan.Tensors, Dropped = dropped, CarriedUnknown = carried,
            BytesWritten = plan.TotalBytes, Shards = plan.Shards.Select(s => s.File).ToList(), Requantized = requant, Elapsed = sw.Elapsed,
        };
    }

    void ReadManifests()
    {
        foreach (string f in Directory.GetFiles(_partsDir, "part-*-of-*.json").Order(StringComparer.Ordinal)) _manifests.Add((f, Read<PartManifest>(f)));
        if (_manifests.Count == 0)
            throw new AdapterException(AdapterErrorKind.Inconsistent, $"{_outDir}: no part has finished ({Converter.PartsDirName}/ holds no part-i-of-n.json)");
        var counts = _manifests.Select(m => m.M.Parts).Distinct().ToList();
        if (counts.Count > 1)
            throw new AdapterException(AdapterErrorKind.Inconsistent, $"{_outDir}: part manifests disagree on the number of parts ({string.Join(", ", counts.Order())}): remove the stale ones and rerun");
        _n = counts[0];
        foreach (var m in _manifests)
            if (!_have.TryAdd(m.M.Part, m))
                throw new AdapterException(AdapterErrorKind.Inconsistent, $"{m.File}: says part {m.M.Part}/{_n}, as {_have[m.M.Part].File} does: remove the stale one and rerun") { File = m.File };
        var missing = Enumerable.Range(1, _n).Where(i => !_have.ContainsKey(i)).ToList();
        if (missing.Count > 0)
            throw new AdapterException(AdapterErrorKind.Inconsistent,
                $"{_outDir}: {missing.Count} of {_n} part(s) missing: {string.Join(", ", missing.Select(i => $"{i}/{_n}"))} (no {Converter.PartsDirName}/{Converter.PartManifestName(missing[0], _n)}; rerun mtp convert ... --part {missing[0]}/{_n})");
    }

    string CheckPlanHashes()
    {
        var hashes = _manifests.Select(m => m.M.PlanHash).Distinct().ToList();
        if (hashes.Count > 1)
            throw new AdapterException(AdapterErrorKind.Inconsistent,
                $"{_outDir}: parts were converted from different plans (input, options or version differ): " +
                string.Join("; ", hashes.Select(h => $"{h[..Math.Min(12, h.Length)]}: parts {string.Join(",", _manifests.Where(m => m.M.PlanHash == h).Select(m => m.M.Part))}")));
        return hashes[0];
    }

    void CheckShards(IReadOnlyList<PartShard> shards)
    {
        for (int i = 1; i <= _n; i++)
        {
            var want = shards.Where((s, k) => Converter.PartOfShard(k, shards.Count, _n) == i).Select(s => s.File).ToList();
            var got = _have[i].M.Shards.ToList();
            if (!want.SequenceEqual(got))
                throw new AdapterException(AdapterErrorKind.Inconsistent, $"{_have[i].File}: lists shards {NameList.Cut(got, 4)} but part {i}/{_n} of the plan is {NameList.Cut(want, 4)}")
                { File = _have[i].File, Names = want };
        }
        var bad = new List<string>();
        foreach (var s in shards)
        {
            var fi = new FileInfo(Path.Combine(_full, s.File));
            if (!fi.Exists) bad.Add($"{s.File} missing");
            else if (fi.Length != s.Size) bad.Add($"{s.File} has {fi.Length:N0} bytes, planned {s.Size:N0}");
        }
        if (bad.Count > 0) throw new AdapterException(AdapterErrorKind.Inconsistent, $"{_outDir}: {bad.Count} shard(s) wrong: {NameList.Cut(bad, 5)}") { File = _outDir, Names = bad };
        var planned = new HashSet<string>(shards.Select(s => s.File), StringComparer.Ordinal);
        var stray = Directory.GetFiles(_full, "*.safetensors").Select(Path.GetFileName).Where(f => !planned.Contains(f!)).Select(f => f!).Order(StringComparer.Ordinal).ToList();
        if (stray.Count > 0)
            throw new AdapterException(AdapterErrorKind.Inconsistent, $"{_outDir}: {stray.Count} shard file(s) not in the plan (left from another run? remove them): {NameList.Cut(stray, 5)}") { File = _outDir, Names = stray };
    }

    IEnumerable<ReportRequantized> Requantized() => Enumerable.Range(1, _n).SelectMany(i => _have[i].M.Requantized);

    // The plan's report with what only the parts know: the re-quantized weights (in tensor order), timings and hosts.
    ReportDocument MergedReport(PartPlanDocument plan, string hash)
    {
        ReportDocument report = plan.Report;
        var secs = Enumerable.Range(1, _n).Select(i => _have[i].M.Seconds).ToList();
        if (plan.Requantize)
        {
            var pos = report.Tensors.Select((t, k) => (t.Name, k)).ToDictionary(x => x.Name, x => x.k, StringComparer.Ordinal);
            report = report with { Requantized = Requantized().OrderBy(r => pos.GetValueOrDefault(r.Name, int.MaxValue)).ToList() };
        }
        return report with
        {
            Timings = report.Timings with { TotalSeconds = Math.Round(secs.Max(), 3), PartSeconds = secs },
            Parts = new ReportParts(_n, hash, Enumerable.Range(1, _n).Select(i => _have[i].M.Host).ToList()),
        };
    }

    static T Read<T>(string file)
    {
        try { return JsonSerializer.Deserialize<T>(File.ReadAllText(file), Strict) ?? throw new JsonException("null document"); }
        catch (JsonException e) { throw Malformed(file, e); }
    }

    static AdapterException Malformed(string file, JsonException e) =>
        new(AdapterErrorKind.Malformed, $"{file}: malformed part document: {e.Message.Replace('\n', ' ')}", e) { File = file };
}
