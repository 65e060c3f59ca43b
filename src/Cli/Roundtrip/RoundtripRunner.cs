using System.Diagnostics;
using System.Text.Json.Nodes;
using Mtp.Adapters;
using Mtp.SafeTensors;

namespace Mtp.Cli.Roundtrip;

/// <summary>What a round trip is asked to do.</summary>
public sealed record RoundtripOptions
{
    /// <summary>The original HF checkpoint.</summary>
    public required string Input { get; init; }
    /// <summary>The work folder (a whole round trip: null for a new temp folder; split: the shared folder).</summary>
    public string? Work { get; init; }
    /// <summary>Keep the intermediates (native/, hf/, verdicts/).</summary>
    public bool Keep { get; init; }
    /// <summary>Stops the conversions and the comparison; the temporaries are then removed.</summary>
    public CancellationToken Cancel { get; init; }
    /// <summary>Progress lines (null: none).</summary>
    public Action<string>? Log { get; init; }
}

/// <summary>What one step of a split round trip did.</summary>
/// <param name="Stage">"to-native", "to-hf" (converted and compared its shards), "merge-native".</param>
/// <param name="Message">The line reported to the user, saying what comes next.</param>
/// <param name="Conversion">The conversion the step ran (none for a merge).</param>
public sealed record RoundtripStep(string Stage, string Message, ConversionResult? Conversion);

/// <summary>
/// HF -> training layout -> HF with the original as reference, then a byte-level comparison with the original, through
/// the library's engines (<see cref="Converter"/>, its <c>--part</c> protocol, <see cref="Verifier"/>). Every output goes
/// through the conversions' output transactions; the work folder's intermediates are removed at the end (also on failure
/// and interruption) unless <see cref="RoundtripOptions.Keep"/>.
/// </summary>
public static class RoundtripRunner
{
    const string VerdictFormat = "mtp-roundtrip-verdict-1";

    /// <summary>The whole round trip in this process.</summary>
    /// <exception cref="OutputInterruptedException">Cancelled; names what was removed.</exception>
    public static (RoundtripVerdict Verdict, RoundtripWork Work, string? Left) RunWhole(RoundtripOptions o)
    {
        var sw = Stopwatch.StartNew();
        RoundtripWork work = RoundtripWork.ForWhole(o.Work);
        var stages = new Dictionary<string, double>();
        try
        {
            var t = Stopwatch.StartNew();
            ConversionResult toNative = Converter.ToNative(o.Input, work.Native, ConvertOptionsOf(o, null), ProgressOf(o, "to native"));
            stages["to_native"] = t.Elapsed.TotalSeconds;
            o.Log?.Invoke($"to native: {Units.Count(toNative.TensorsWritten, "tensor")}, {toNative.BytesWritten:N0} bytes in {t.Elapsed.TotalSeconds:F1} s");
            t.Restart();
            ConversionResult toHf = Converter.ToHf(work.Native, work.Hf, ConvertOptionsOf(o, null) with { Reference = o.Input }, ProgressOf(o, "to hf"));
            stages["to_hf"] = t.Elapsed.TotalSeconds;
            o.Log?.Invoke($"to hf: {Units.Count(toHf.TensorsWritten, "tensor")}, {toHf.BytesWritten:N0} bytes in {t.Elapsed.TotalSeconds:F1} s");
            t.Restart();
            o.Log?.Invoke($"comparing {work.Hf} with {o.Input}");
            VerifyReport report = Verifier.Compare(o.Input, work.Hf, null, null, o.Cancel);
            stages["verify"] = t.Elapsed.TotalSeconds;
            var verdict = RoundtripVerdict.Make(o.Input, toNative.Family, report, OriginalNames(o.Input), TensorGroups.FromNativeOutput(work.Native),
                sw.Elapsed.TotalSeconds, stages);
            return (verdict, work, o.Keep ? null : work.RemoveIntermediates());
        }
        catch (OperationCanceledException e) when (!o.Keep)
        {
            string? left = work.RemoveIntermediates();
            throw new OutputInterruptedException(left == null ? work.RemovedText : null, left, e);
        }
        catch when (!o.Keep)
        {
            work.RemoveIntermediates();
            throw;
        }
    }

    /// <summary>
    /// One machine's share of a split round trip, decided by the work folder: while <c>native/</c> is incomplete, part
    /// <paramref name="part"/> of HF -> native; once it is complete, part <paramref name="part"/> of native -> HF and the
    /// comparison of that part's shards with the original, written to <c>verdicts/</c>.
    /// </summary>
    public static RoundtripStep RunPart(RoundtripOptions o, (int Index, int Count) part)
    {
        RoundtripWork work = RoundtripWork.ForParts(o.Work!);
        var (i, n) = part;
        string again = $"mtp roundtrip {o.Input} --work {o.Work} --merge";
        if (!RoundtripWork.IsComplete(work.Native))
        {
            ConversionResult r = Converter.ToNative(o.Input, work.Native, ConvertOptionsOf(o, part), ProgressOf(o, $"part {i}/{n}: to native"));
            return new RoundtripStep("to-native", $"part {i}/{n}: to native: {Units.Count(r.Shards.Count, "shard")}, {r.BytesWritten:N0} bytes in {r.Elapsed.TotalSeconds:F1} s; " +
                $"once {AllParts(n)} done run {again}", r);
        }
        CheckSameInput(o.Input, work);
        var sw = Stopwatch.StartNew();
        IReadOnlyList<string> shards;
        string planHash, did;
        ConversionResult? hf = null;
        if (RoundtripWork.IsComplete(work.Hf))
        {
            // A part that died between its conversion and its verdict, rerun after the merge: its shards are in place
            // (the merge checked them), so only the comparison is redone.
            (shards, planHash) = MergedShardsOf(work, i, n);
            did = "compared (hf/ already merged)";
        }
        else
        {
            hf = Converter.ToHf(work.Native, work.Hf, ConvertOptionsOf(o, part) with { Reference = o.Input }, ProgressOf(o, $"part {i}/{n}: to hf"));
            shards = hf.Shards;
            string manifest = Path.Combine(work.Hf, Converter.PartsDirName, Converter.PartManifestName(i, n));
            planHash = ReadJson(manifest)["plan_hash"]?.GetValue<string>() ?? throw new CliException(ExitCodes.Malformed, $"{manifest}: no plan_hash", file: manifest);
            did = "to hf and compared";
        }
        double convertSeconds = sw.Elapsed.TotalSeconds;
        var mine = new HashSet<string>(StringComparer.Ordinal);
        foreach (string shard in shards)
        {
            using var f = SafeTensorsFile.Open(Path.Combine(work.Hf, shard));
            foreach (var t in f.Tensors) mine.Add(t.Name);
        }
        sw.Restart();
        o.Log?.Invoke($"part {i}/{n}: comparing the {Units.Count(mine.Count, "tensor")} of its {Units.Count(shards.Count, "shard")} with {o.Input}");
        VerifyReport report = Verifier.Compare(o.Input, work.Hf, null, mine.Contains, o.Cancel);
        var verdict = new JsonObject
        {
            ["format"] = VerdictFormat, ["plan_hash"] = planHash, ["part"] = i, ["parts"] = n, ["host"] = Environment.MachineName,
            ["shards"] = new JsonArray(shards.Select(s => (JsonNode)s).ToArray()),
            ["seconds"] = new JsonObject { ["to_hf"] = Math.Round(convertSeconds, 3), ["verify"] = Math.Round(sw.Elapsed.TotalSeconds, 3) },
            ["verify"] = report.ToJson(),
        };
        try
        {
            Directory.CreateDirectory(work.Verdicts);
            OutputTransaction.WriteAllText(VerdictPath(work, i, n), verdict.ToJsonString(CommandRunner.Indented) + "\n");
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new CliException(ExitCodes.Io, $"{work.Verdicts}: cannot write the verdict of part {i}/{n}: {e.Message}", file: work.Verdicts);
        }
        string what = report.Identical ? $"{Units.Count(report.Compared, "tensor")} byte-identical" : $"{report.Differences.Count} of {Units.Count(report.Compared, "tensor")} differ";
        return new RoundtripStep("to-hf", $"part {i}/{n}: {did}: {Units.Count(shards.Count, "shard")}, {what}; once {AllParts(n)} done run {again}", hf);
    }

    /// <summary>
    /// The once-only step between and after the parts: completes <c>native/</c> (<see cref="Converter.MergeParts"/>), or,
    /// once the parts have converted back and compared, completes <c>hf/</c>, checks that every part's verdict is there and
    /// of this plan, and merges them into the round trip's verdict (null for the first merge).
    /// </summary>
    public static (RoundtripStep Step, RoundtripVerdict? Verdict, string? Left) Merge(RoundtripOptions o)
    {
        RoundtripWork work = RoundtripWork.ForParts(o.Work!);
        string parts = $"mtp roundtrip {o.Input} --work {o.Work} --part i/n";
        if (!RoundtripWork.IsComplete(work.Native))
        {
            if (!Directory.Exists(Path.Combine(work.Native, Converter.PartsDirName)))
                throw new CliException(ExitCodes.Usage, $"{o.Work}: no round trip parts to merge (run {parts} on every machine first)", file: o.Work);
            ConversionResult m = Converter.MergeParts(work.Native);
            return (new RoundtripStep("merge-native", $"merged the training layout: {Units.Count(m.Shards.Count, "shard")}, {m.BytesWritten:N0} bytes; now run {parts} again " +
                "on every machine (back to HF and compare), then this merge once more", m), null, null);
        }
        if (!Directory.Exists(work.Hf))
            throw new CliException(ExitCodes.Usage, $"{o.Work}: the training layout is complete but no part has converted back yet (run {parts} on every machine, then merge)", file: o.Work);
        CheckSameInput(o.Input, work);
        if (Directory.Exists(Path.Combine(work.Hf, Converter.PartsDirName))) Converter.MergeParts(work.Hf);
        string hfReportPath = Path.Combine(work.Hf, Converter.ReportFileName);
        ReportDocument hfReport = ReportDocument.Read(hfReportPath);
        ReportParts recorded = hfReport.Parts ?? throw new CliException(ExitCodes.Inconsistent, $"{hfReportPath}: not converted in parts (no 'parts')", file: hfReportPath);
        (int n, string planHash) = (recorded.Count, recorded.PlanHash);

        var missing = Enumerable.Range(1, n).Where(i => !File.Exists(VerdictPath(work, i, n))).ToList();
        if (missing.Count > 0)
            throw new CliException(ExitCodes.Inconsistent, $"{work.Verdicts}: {missing.Count} of {n} part verdicts missing: {string.Join(", ", missing.Select(i => $"{i}/{n}"))} " +
                $"(rerun mtp roundtrip {o.Input} --work {o.Work} --part {missing[0]}/{n})", file: VerdictPath(work, missing[0], n));
        var reports = new List<VerifyReport>();
        var verified = new HashSet<string>(StringComparer.Ordinal);
        double toHf = 0, verify = 0;
        for (int i = 1; i <= n; i++)
        {
            string path = VerdictPath(work, i, n);
            JsonObject v = ReadJson(path);
            try
            {
                if (v["format"]?.GetValue<string>() != VerdictFormat || v["plan_hash"]?.GetValue<string>() != planHash)
                    throw new CliException(ExitCodes.Inconsistent, $"{path}: made for another conversion back to HF (plan {planHash[..12]} expected); rerun mtp roundtrip {o.Input} --work {o.Work} --part {i}/{n}", file: path);
                foreach (var s in v["shards"]!.AsArray()) verified.Add(s!.GetValue<string>());
                reports.Add(VerifyReport.FromJson(v["verify"]!.AsObject()));
                toHf = Math.Max(toHf, v["seconds"]!["to_hf"]!.GetValue<double>());
                verify = Math.Max(verify, v["seconds"]!["verify"]!.GetValue<double>());
            }
            catch (Exception e) when (e is FormatException or InvalidOperationException or NullReferenceException)
            {
                throw new CliException(ExitCodes.Malformed, $"{path}: malformed verdict: {e.Message}", file: path);
            }
        }
        var shards = hfReport.Target.Shards;
        var unverified = shards.Where(s => !verified.Contains(s)).ToList();
        if (unverified.Count > 0)
            throw new CliException(ExitCodes.Inconsistent, $"{work.Verdicts}: {Units.Count(unverified.Count, "shard")} of {work.Hf} compared by no part: {NameList.Cut(unverified)}", file: work.Verdicts);

        // The parts compared the tensors of their own shards; the names on either side only are a check of the whole.
        List<string> original = OriginalNames(o.Input);
        HashSet<string> back;
        using (var c = Checkpoint.Open(work.Hf)) back = c.Tensors.Select(t => t.Name).ToHashSet(StringComparer.Ordinal);
        var originalSet = original.ToHashSet(StringComparer.Ordinal);
        var merged = new VerifyReport(reports.Sum(r => r.Compared),
            original.Where(x => !back.Contains(x)).Concat(reports.SelectMany(r => r.OnlyInA)).Distinct().ToList(),
            back.Where(x => !originalSet.Contains(x)).Concat(reports.SelectMany(r => r.OnlyInB)).Distinct().ToList(),
            reports.SelectMany(r => r.Differences).ToList(), null);
        double toNative = ReportDocument.Read(Path.Combine(work.Native, Converter.ReportFileName)).Timings.TotalSeconds;
        var stages = new Dictionary<string, double> { ["to_native"] = toNative, ["to_hf"] = toHf, ["verify"] = verify };
        var verdict = RoundtripVerdict.Make(o.Input, hfReport.Family, merged, original, TensorGroups.FromNativeOutput(work.Native),
            stages.Values.Sum(), stages);
        var step = new RoundtripStep("merge", $"merged {Units.Count(n, "part verdict")}", null);
        return (step, verdict, o.Keep ? null : work.RemoveIntermediates());
    }

    // Part i's shards of a merged hf/ (the partition --part uses) and the plan hash the merge recorded.
    static (IReadOnlyList<string> Shards, string PlanHash) MergedShardsOf(RoundtripWork work, int i, int n)
    {
        string path = Path.Combine(work.Hf, Converter.ReportFileName);
        ReportDocument report = ReportDocument.Read(path);
        ReportParts parts = report.Parts ?? throw new CliException(ExitCodes.Malformed, $"{path}: no parts record (not converted with --part)", file: path);
        if (parts.Count != n)
            throw new CliException(ExitCodes.Usage, $"{work.Hf}: converted back in {parts.Count} parts, so its parts are i/{parts.Count}, not {i}/{n}", file: work.Hf);
        var all = report.Target.Shards;
        return (all.Where((_, k) => Converter.PartOfShard(k, all.Count, n) == i).ToList(), parts.PlanHash);
    }

    static string AllParts(int n) => n == 1 ? "the one part is" : $"all {n} parts are";

    static string VerdictPath(RoundtripWork work, int i, int n) => Path.Combine(work.Verdicts, $"part-{i}-of-{n}.json");

    // One part count serves both directions, whose shard counts differ: a part may have nothing to write in one of them.
    static ConvertOptions ConvertOptionsOf(RoundtripOptions o, (int, int)? part) => new() { Cancel = o.Cancel, Part = part, AllowEmptyParts = true };

    // The conversions' log lines, and a timed progress line (every 10 s; see TimedProgress): a long round trip in a CI
    // log shows it is moving, with its rate and ETA.
    static ConvertProgress? ProgressOf(RoundtripOptions o, string stage)
    {
        if (o.Log is not { } log) return null;
        var progress = new TimedProgress(stage, log);
        return new ConvertProgress { Log = log, Started = progress.Start, Advanced = (n, _) => progress.Advance(n) };
    }

    static List<string> OriginalNames(string input)
    {
        using var c = Checkpoint.Open(input);
        return c.Tensors.Select(t => t.Name).ToList();
    }

    // The work folder's training layout must come from this HF_DIR. Paths differ between machines of a split run, so
    // what is compared is the recorded source header: every tensor's name, dtype and shape.
    static void CheckSameInput(string input, RoundtripWork work)
    {
        var recorded = ConversionReport.Read(work.Native)?.SourceTensors;
        using var c = Checkpoint.Open(input);
        bool same = recorded != null && recorded.Count == c.Tensors.Count && recorded.All(r =>
            c.TryGet(r.Name, out var t) && t.Info.DType == r.DType && t.Info.Shape.SequenceEqual(r.Shape));
        if (!same)
            throw new CliException(ExitCodes.Usage, $"{work.Native}: was converted from another checkpoint than {input} (its {Converter.ReportFileName} records other tensors); " +
                "use the HF_DIR the parts started with, or a new --work", file: work.Native);
    }

    static JsonObject ReadJson(string path)
    {
        try { return JsonNode.Parse(File.ReadAllText(path)) as JsonObject ?? throw new System.Text.Json.JsonException("not a JSON object"); }
        catch (System.Text.Json.JsonException e) { throw new CliException(ExitCodes.Malformed, $"{path}: not valid JSON: {e.Message.Replace('\n', ' ')}", file: path); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { throw new CliException(ExitCodes.Io, $"{path}: {e.Message}", file: path); }
    }
}
