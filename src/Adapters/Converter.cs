using System.Collections.Concurrent;
using System.Diagnostics;
using System.Text.Json;
using System.Text.Json.Nodes;
using Mtp.Quant;
using Mtp.SafeTensors;

namespace Mtp.Adapters;

/// <summary>
/// The streaming conversion engine: plans every output tensor from headers only, shards the plan, then writes shard by
/// shard through the memory maps into a temporary directory that is renamed into place at the end.
/// </summary>
public static partial class Converter
{
    /// <summary>Name of the provenance report written next to the converted weights.</summary>
    public const string ReportFileName = "conversion.json";

    static readonly JsonSerializerOptions Indented = new() { WriteIndented = true };

    /// <summary>HF checkpoint -> training layout.</summary>
    /// <exception cref="AdapterException">Missing / unknown tensors, malformed input, usage or I/O errors (one-line message).</exception>
    /// <exception cref="SafeTensorsException">A malformed safetensors file or index.</exception>
    public static ConversionResult ToNative(string inDir, string outDir, ConvertOptions options, ConvertProgress? progress = null)
    {
        var sw = Stopwatch.StartNew();
        CheckOutput(inDir, outDir, options);
        using Checkpoint src = Checkpoint.Open(inDir);
        // The MTP copies of the embedding/head: compared once per conversion (a --part takes an earlier part's result).
        var tied = new TiedCopies(options.Part != null ? Path.Combine(Path.GetFullPath(outDir), PartsDirName) : null, options.DropBehind);
        NativePlan plan = PlanNative(src, inDir, options, tied);
        var shards = ShardPlanner.Plan(plan.Outputs.Select(o => o.Spec).ToList(), options.MaxShardBytes);
        if (tied.Record.Count > 0)
            progress?.Log?.Invoke($"tied copies: {tied.Record.Count} compared ({tied.Reused} taken from an earlier part's manifest, {tied.BytesRead:N0} bytes read)");
        var extra = plan.SourceRecord(src);
        extra.Remove("family");
        extra.Remove("source");
        extra[TiedCopies.ManifestKey] = tied.Record;
        extra["warnings"] = OversizedShards(shards, options, progress);
        return Execute(new ConversionPlan
        {
            Direction = ConversionDirection.ToNative, Family = plan.Family, InDir = inDir, OutDir = outDir, Options = options, Source = src,
            Outputs = plan.Outputs, Shards = shards, Config = plan.Config, Dropped = plan.Dropped, Carried = plan.Carried, Extra = extra,
            Clock = sw, PlanTime = sw.Elapsed,
        }, progress);
    }

    /// <summary>
    /// Plans HF -> training layout from <paramref name="src"/>'s headers: every output tensor with the pieces that make it,
    /// strictly (a missing tensor, or an unknown one without <see cref="ConvertOptions.AllowUnknown"/>, throws). Shared by
    /// <see cref="ToNative"/>, which writes the plan, and <see cref="NativeView"/>, which produces it in memory.
    /// </summary>
    internal static NativePlan PlanNative(Checkpoint src, string inDir, ConvertOptions options, TiedCopies tied)
    {
        Conventions.Check(src);
        JsonObject config = src.Config ?? throw new AdapterException(AdapterErrorKind.Malformed, $"{inDir}: no config.json (needed to know the family, layers, experts and MTP depth)");
        string family = ResolveFamily(options.Family, config, inDir);
        DSparkDrafter.Refuse(family, src, config); // before any rule could claim a drafter block as an MTP depth
        var names = src.Tensors.Select(t => t.Name).ToList();
        var layout = LayoutDetector.Detect(inDir, config, names);
        if (layout.Layout == CheckpointLayout.Training && LayoutDetector.RecordedDirection(inDir) != null) throw WrongDirection(inDir, layout, "native");
        RuleTable table = Families.BuildTable(family, config, names);
        DType outType = options.DType ?? DType.BF16;
        if (outType is not (DType.BF16 or DType.F32)) throw new AdapterException(AdapterErrorKind.Usage, "--dtype must be bf16 or f32");
        BlockSize block = BlockOf(config, table.Quant);
        var order = src.Tensors.Select((t, i) => (t.Name, i)).ToDictionary(x => x.Name, x => x.i, StringComparer.Ordinal);

        var planning = new PlanningState();
        var side = new NativeSide
        {
            Source = src, Planning = planning, Ctx = new NativePlanContext(src, table, outType, block, planning, ScalesArePowersOfTwo(config)),
            Tied = tied, PerExpert = options.PerExpertLayout, Order = order,
        };
        side.PlanBindings(table);
        var (outputs, missing) = (side.Outputs, planning.Missing);
        if (missing.Count > 0) throw Diagnose(missing, inDir, "native", layout, new FamilyClaim(options.Family, family, config, inDir));
        var carried = HandleUnknown(planning.Unknown, options, inDir, src, outputs, order);

        outputs.Sort((a, b) => a.Order.CompareTo(b.Order));
        CheckDuplicateOutputs(outputs);
        return new NativePlan(family, inDir, outputs, side.Dropped, carried, NativeConfig(config, outType), config);
    }

    /// <summary>
    /// Training layout -> HF checkpoint of the family, re-quantized to the source scheme: the reference's, else the one the
    /// input's conversion.json records (<see cref="Lineage"/>), else only with an explicit <see cref="ConvertOptions.DType"/>.
    /// </summary>
    /// <exception cref="AdapterException">Missing / unknown tensors, malformed input, usage (also: no reference, no recorded
    /// source and no dtype) or I/O errors (one-line message).</exception>
    /// <exception cref="SafeTensorsException">A malformed safetensors file or index.</exception>
    public static ConversionResult ToHf(string inDir, string outDir, ConvertOptions options, ConvertProgress? progress = null)
    {
        var sw = Stopwatch.StartNew();
        CheckOutput(inDir, outDir, options);
        using var planner = new HfExportPlanner(inDir, outDir, options, sw);
        return Execute(planner.Plan(progress), progress);
    }

    // ------------------------------------------------------------------ shared helpers

    internal static string ResolveFamily(string? given, JsonObject config, string dir)
    {
        if (given != null)
            return Families.Normalize(given) ?? throw new AdapterException(AdapterErrorKind.Usage, $"--family {given}: unknown family (known: {string.Join(", ", Families.All)})");
        return FamilyDetector.Detect(config) ?? throw new AdapterException(AdapterErrorKind.Usage,
            $"{Path.Combine(dir, "config.json")}: model_type '{FamilyDetector.Str(config, "model_type")}' is not a known family; pass --family ({string.Join(", ", Families.All)})");
    }

    /// <summary>
    /// config.json's FP8 block (<c>weight_block_size</c>, or a compressed-tensors scheme's), else the family scheme's, else 128x128.
    /// </summary>
    internal static BlockSize BlockOf(JsonObject config, QuantScheme? scheme = null)
    {
        var q = QuantConfigOf(config);
        if (CompressedTensors.Is(q)) return CompressedTensors.BlockOf(q!);
        if (q?["weight_block_size"] is JsonArray a && a.Count == 2 && a[0] is JsonValue r && a[1] is JsonValue c
            && r.TryGetValue(out int rr) && c.TryGetValue(out int cc) && rr > 0 && cc > 0)
            return new BlockSize(rr, cc);
        return scheme != null ? new BlockSize(scheme.BlockSize, scheme.BlockSize) : BlockSize.Fp8Default;
    }

    internal static bool SameDirectory(string a, string b) =>
        string.Equals(Path.GetFullPath(a).TrimEnd('/'), Path.GetFullPath(b).TrimEnd('/'), StringComparison.Ordinal);

    static void CheckOutput(string inDir, string outDir, ConvertOptions o)
    {
        if (!File.Exists(inDir) && !Directory.Exists(inDir))
            throw new AdapterException(AdapterErrorKind.Usage, $"{inDir}: no such file or directory");
        if (SameDirectory(inDir, outDir)) throw new AdapterException(AdapterErrorKind.Usage, "the output directory must differ from the input (the input is never written)");
        if (File.Exists(outDir)) throw new AdapterException(AdapterErrorKind.Usage, $"{outDir}: exists and is a file");
        if (o.Part is { } part)
        {
            if (part.Count < 1 || part.Index < 1 || part.Index > part.Count)
                throw new AdapterException(AdapterErrorKind.Usage, $"--part must be i/n with 1 <= i <= n, not {part.Index}/{part.Count}");
            if (File.Exists(Path.Combine(outDir, ReportFileName)) && !o.Force)
                throw new AdapterException(AdapterErrorKind.Usage, $"{outDir}: already a complete checkpoint (has {ReportFileName}); use --force to convert parts into it again");
        }
        else AsAdapterError(() => OutputFolder.CheckReplaceable(outDir, RulesOf(inDir, o))); // early, before planning; checked again on writing
        if (o.MaxShardBytes <= 0) throw new AdapterException(AdapterErrorKind.Usage, "--max-shard-size must be positive");
        if (o.MaxMemoryBytes <= 0) throw new AdapterException(AdapterErrorKind.Usage, "--max-memory must be positive");
    }

    /// <summary>The output transaction of a conversion (replace rules, space check of <paramref name="plannedBytes"/>, stale temporaries).</summary>
    static OutputTransaction BeginOutput(string inDir, string outDir, ConvertOptions o, long plannedBytes)
    {
        OutputTransaction? t = null;
        AsAdapterError(() => t = OutputTransaction.Begin(outDir, plannedBytes, RulesOf(inDir, o)));
        return t!;
    }

    // A previous output of this conversion also holds the auxiliary files and sub-folders copied from the input and the reference.
    static OutputRules RulesOf(string inDir, ConvertOptions o) => new()
    {
        Force = o.Force, ForceAny = o.ForceAny, SkipSpaceCheck = o.SkipSpaceCheck, Cancel = o.Cancel,
        CarriedNames = new[] { inDir, o.Reference }.Select(d => d != null && File.Exists(d) ? Path.GetDirectoryName(Path.GetFullPath(d)) : d)
            .Where(d => d != null && Directory.Exists(d))
            .SelectMany(d => Directory.EnumerateFileSystemEntries(d!).Select(Path.GetFileName)).Select(n => n!).ToHashSet(StringComparer.Ordinal),
    };

    internal static void AsAdapterError(Action a)
    {
        try { a(); }
        catch (OutputException e)
        {
            throw new AdapterException(e.Kind == OutputErrorKind.Refused ? AdapterErrorKind.Usage : AdapterErrorKind.Io, e.Message, e) { File = e.File };
        }
    }

    // The one thing wrong when expected tensors are missing: the checkpoint is on the other side of the conversion, or
    // --family contradicts config.json; only then the (cut) list of what is missing.
    internal static AdapterException Diagnose(List<string> missing, string dir, string to, LayoutFinding layout, FamilyClaim claim)
    {
        var (givenFamily, family, config, configDir) = (claim.Given, claim.Family, claim.Config, claim.ConfigDir);
        var wrongSide = to == "native" ? CheckpointLayout.Training : CheckpointLayout.HuggingFace;
        if (layout.Layout == wrongSide) return WrongDirection(dir, layout, to);
        if (givenFamily != null && FamilyDetector.Detect(config) is string configFamily && configFamily != family)
        {
            string configPath = Path.Combine(Directory.Exists(configDir) ? configDir : Path.GetDirectoryName(Path.GetFullPath(configDir))!, "config.json");
            return new AdapterException(AdapterErrorKind.Usage,
                $"--family {givenFamily}: {configPath} says model_type '{FamilyDetector.Str(config, "model_type")}' ({configFamily}), and {missing.Count} tensor(s) a {family} checkpoint has are missing; drop --family or pass --family {configFamily}")
            { File = configPath, Names = missing };
        }
        return new AdapterException(AdapterErrorKind.Inconsistent, $"{dir}: {missing.Count} expected tensor(s) missing: {NameList.Cut(missing)}")
        { File = dir, Tensor = missing[0], Names = missing };
    }

    internal static AdapterException WrongDirection(string dir, LayoutFinding layout, string to) => to == "native"
        ? new AdapterException(AdapterErrorKind.Usage, $"{dir}: already in the training layout ({layout.Evidence}); --to hf converts it back to Hugging Face") { File = dir }
        : new AdapterException(AdapterErrorKind.Usage, $"{dir}: a Hugging Face checkpoint ({layout.Evidence}), not the training layout; --to native converts it") { File = dir };

    // A reference of another family cannot be the checkpoint the input came from; say so before any name is matched.
    internal static void CheckReferenceFamily(string referenceDir, JsonObject? referenceConfig, string inDir, ConversionReport? report, JsonObject? inputConfig)
    {
        string? refFamily = referenceConfig is null ? null : FamilyDetector.Detect(referenceConfig);
        string? recorded = report?.Family is string f ? Families.Normalize(f) : null;
        string? inFamily = recorded ?? (inputConfig is null ? null : FamilyDetector.Detect(inputConfig));
        if (refFamily is null || inFamily is null || refFamily == inFamily) return;
        string refConfig = Path.Combine(Directory.Exists(referenceDir) ? referenceDir : Path.GetDirectoryName(Path.GetFullPath(referenceDir))!, "config.json");
        throw new AdapterException(AdapterErrorKind.Inconsistent,
            $"--reference {referenceDir}: a {refFamily} checkpoint (config.json model_type '{FamilyDetector.Str(referenceConfig!, "model_type")}'), but {inDir} is {inFamily} " +
            $"({(recorded != null ? "its " + ReportFileName : "its config.json")}); pass the Hugging Face checkpoint it was converted from")
        { File = refConfig };
    }

    internal static List<string> HandleUnknown(List<string> unknown, ConvertOptions o, string dir, Checkpoint src, List<PlannedTensor> outputs, Dictionary<string, int> order)
    {
        if (unknown.Count == 0) return unknown;
        if (!o.AllowUnknown)
            throw new AdapterException(AdapterErrorKind.Inconsistent, $"{dir}: {unknown.Count} tensor(s) no rule claims: {NameList.Cut(unknown)}; --allow-unknown carries them through")
            { File = src.TryGet(unknown[0], out var u) ? u.File.Path : dir, Tensor = unknown[0], Names = unknown };
        foreach (string n in unknown)
        {
            var t = src.Get(n);
            var p = new PlannedTensor { Name = n, DType = t.Info.DType, Shape = t.Info.Shape, Order = (1, order[n]) };
            p.Sources.Add(n); p.Ops.Add("unknown: carried through unchanged (--allow-unknown)"); p.Pieces.Add(new CopyPiece(Src.Whole(t)));
            outputs.Add(p);
        }
        return unknown;
    }

    internal static void CheckDuplicateOutputs(List<PlannedTensor> outputs)
    {
        var seen = new Dictionary<string, PlannedTensor>(StringComparer.Ordinal);
        foreach (var o in outputs)
            if (!seen.TryAdd(o.Name, o))
                throw new AdapterException(AdapterErrorKind.Inconsistent, $"two sources map to '{o.Name}': {string.Join(", ", seen[o.Name].Sources.Take(2))} and {string.Join(", ", o.Sources.Take(2))}");
    }

    static JsonObject NativeConfig(JsonObject config, DType outType)
    {
        var c = (JsonObject)config.DeepClone();
        c.Remove("quantization_config");
        (c["text_config"] as JsonObject)?.Remove("quantization_config");
        if (c["expert_dtype"] != null) c.Remove("expert_dtype");
        SetDType(c, outType);
        return c;
    }

    internal static void SetDType(JsonObject c, DType t)
    {
        string name = t == DType.F32 ? "float32" : "bfloat16";
        foreach (var o in new[] { c, c["text_config"] as JsonObject })
        {
            if (o == null) continue;
            foreach (string key in new[] { "torch_dtype", "dtype" }) if (o[key] != null) o[key] = name;
        }
        if (c["torch_dtype"] == null && c["dtype"] == null) c["torch_dtype"] = name;
    }

}
