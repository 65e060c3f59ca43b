using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using Mtp.SafeTensors;

namespace Mtp.Adapters.Inspection;

/// <summary>
/// Summarises a checkpoint from its headers and config.json alone (no tensor data is read):
/// family, dtypes, quantization, MTP depth and placement, expert layout, and every problem.
/// </summary>
public static partial class CheckpointInspector
{
    [GeneratedRegex(@"^mtp\.(\d+)\.")] private static partial Regex MtpDepthPrefix();
    [GeneratedRegex(@"^(?:model\.)?layers\.(\d+)\.")] private static partial Regex MainLayer();
    [GeneratedRegex(@"\.experts\.\d+\.")] private static partial Regex PerExpert();
    [GeneratedRegex(@"\.experts\.(gate_up_proj|down_proj)$")] private static partial Regex FusedExpert();

    /// <summary>Bytes read of each FP4 group scale when sampling (smaller tensors are read whole).</summary>
    public const int ScaleSampleBytes = ScaleReader.SampleBytes;

    /// <summary>Maps config.json's model_type to a family id.</summary>
    public static string FamilyOf(string? modelType) => FamilyRegistry.ByModelType(modelType)?.Id ?? "unknown";

    /// <summary>
    /// Inspects <paramref name="path"/> (directory or file), collecting problems instead of stopping at the first. The only
    /// data read are the scales (for NaN / infinite values), through <see cref="ScaleReader"/>: FP4 group scales are sampled
    /// unless <paramref name="fullScales"/>.
    /// </summary>
    public static CheckpointFindings Inspect(string path, bool fullScales = false)
    {
        using Checkpoint ck = Checkpoint.Open(path, collectProblems: true);
        var problems = ck.Problems.Select(p => p.Message).ToList();
        var warnings = ck.Warnings.ToList();
        // One shard of an indexed checkpoint: what lives in the other shards is not a problem of this one.
        var elsewhere = OtherShardsNames(path, out int shardCount);
        if (elsewhere is not null)
            warnings.Add($"{path} is 1 of {shardCount} shards in {ShardIndex.FileName}: checks that need the whole checkpoint (config.json layers and MTP depth, scales in other shards) are skipped; inspect {ck.Directory} for them");
        bool whole = elsewhere is null && ck.Problems.Count == 0;

        JsonObject? cfg = ck.Config;
        JsonObject? text = cfg?["text_config"] as JsonObject;
        string? modelType = Str(cfg, "model_type") ?? Str(text, "model_type");
        int? layers = Int(text, "num_hidden_layers") ?? Int(cfg, "num_hidden_layers");
        int? cfgDepth = Int(text, "mtp_num_hidden_layers") ?? Int(cfg, "mtp_num_hidden_layers")
                        ?? Int(cfg, "num_nextn_predict_layers") ?? Int(text, "num_nextn_predict_layers");

        var (depth, mtpCount, locations) = FindMtp(ck, layers);
        int inconsistent = 0;
        if (cfgDepth is int cd && cd != depth && whole)
        {
            problems.Add($"{ck.Directory}: config.json declares MTP depth {cd} but the tensors hold {depth}");
            inconsistent++;
        }
        if (whole)
            foreach (string p in CheckConventions(ck, layers, cfg, text, locations)) { problems.Add(p); inconsistent++; }
        if (whole && cfg is not null && FamilyRegistry.Of(cfg)?.Id == Families.DeepSeekV4 && DSparkDrafter.Find(cfg, ck.Tensors.Select(t => t.Name)) is var (what, tensor))
        {
            problems.Add(DSparkDrafter.Message(ck, what, tensor));
            inconsistent++;
        }

        var reader = new ScaleReader(fullScales);
        var quant = QuantScan.Scan(ck, cfg, text, problems, reader, elsewhere);
        return new CheckpointFindings
        {
            Path = path, Family = FamilyOf(modelType), ModelType = modelType,
            ShardCount = ck.Files.Count, TensorCount = ck.Tensors.Count, TotalBytes = ck.TotalTensorBytes, DTypeCounts = DTypeCounts(ck),
            Quantization = quant.Schemes, Fp8Weights = quant.Fp8, Fp4Weights = quant.Fp4,
            NumHiddenLayers = layers, MtpDepth = depth, ConfigMtpDepth = cfgDepth, MtpTensorCount = mtpCount, MtpLocations = locations,
            ExpertLayout = ExpertLayout(ck), Problems = problems, Warnings = warnings,
            ScaleCheck = new ScaleCheckSummary(reader.TensorsRead, reader.TensorsSampled, reader.BytesRead, reader.Full),
            ReaderErrors = ck.Problems.Select(p => p.Error).ToList(), InconsistentProblems = inconsistent,
            QuantProblems = quant.Problems, QuantMalformed = quant.Malformed,
        };
    }

    static SortedDictionary<string, int> DTypeCounts(Checkpoint ck)
    {
        var dtypes = new SortedDictionary<string, int>(StringComparer.Ordinal);
        foreach (var t in ck.Tensors)
        {
            string d = t.Info.DType.Name();
            dtypes[d] = dtypes.GetValueOrDefault(d) + 1;
        }
        return dtypes;
    }

    static string ExpertLayout(Checkpoint ck)
    {
        bool perExpert = ck.Tensors.Any(t => PerExpert().IsMatch(t.Name));
        bool fused = ck.Tensors.Any(t => FusedExpert().IsMatch(t.Name));
        return (perExpert, fused) switch { (true, true) => "mixed", (true, false) => "per-expert", (false, true) => "stacked", _ => "none" };
    }

    /// <summary>
    /// When <paramref name="path"/> is a file that the index beside it lists with other shards: the names the index places
    /// in those other shards (and how many shards there are); otherwise null.
    /// </summary>
    static HashSet<string>? OtherShardsNames(string path, out int shardCount)
    {
        shardCount = 0;
        if (!File.Exists(path)) return null;
        string indexPath = System.IO.Path.Combine(System.IO.Path.GetDirectoryName(System.IO.Path.GetFullPath(path))!, ShardIndex.FileName);
        if (!File.Exists(indexPath)) return null;
        ShardIndex index;
        try { index = ShardIndex.Read(indexPath); }
        catch (SafeTensorsException) { return null; } // a broken index is not this file's problem here
        string self = System.IO.Path.GetFileName(path);
        var shards = index.WeightMap.Select(kv => kv.Value).Distinct(StringComparer.Ordinal).ToList();
        if (!shards.Contains(self, StringComparer.Ordinal) || shards.Count < 2) return null;
        shardCount = shards.Count;
        return index.WeightMap.Where(kv => kv.Value != self).Select(kv => kv.Key).ToHashSet(StringComparer.Ordinal);
    }

    /// <summary>
    /// MTP tensors: <c>mtp.layers.{k}.*</c> (training layout, Qwen), <c>model.mtp_layers.{k}.*</c> (MiMo), <c>model.mtp.layers.{k}.*</c> (MiMo-V2-Flash), <c>mtp.{k}.*</c> (DeepSeek-V4), other
    /// <c>mtp.*</c> (Qwen's shared fc/norms), and decoder layers numbered past num_hidden_layers
    /// (DeepSeek-V3 and the legacy V4 spelling).
    /// </summary>
    static (int Depth, int Count, List<string> Locations) FindMtp(Checkpoint ck, int? layers)
    {
        var depths = new SortedSet<int>();
        var locations = new SortedSet<string>(StringComparer.Ordinal);
        int count = 0;
        foreach (var t in ck.Tensors)
        {
            string n = t.Name;
            Match m;
            if (MtpNames.TryLayerDepth(n, out int j))
            {
                depths.Add(j);
                locations.Add("mtp.layers.{k}.*");
            }
            else if (MtpNames.TryMimoDepth(n, out int jm))
            {
                depths.Add(jm);
                locations.Add("model.mtp_layers.{k}.*");
            }
            else if (MtpNames.TryMimoV2Depth(n, out int jv))
            {
                depths.Add(jv);
                locations.Add("model.mtp.layers.{k}.*");
            }
            else if ((m = MtpDepthPrefix().Match(n)).Success && int.TryParse(m.Groups[1].Value, out int k0))
            {
                depths.Add(k0);
                locations.Add("mtp.{k}.*");
            }
            else if (n.StartsWith("mtp.", StringComparison.Ordinal))
            {
                locations.Add("mtp.* (shared by all depths)");
            }
            else if (layers is int l && (m = MainLayer().Match(n)).Success && int.TryParse(m.Groups[1].Value, out int layer) && layer >= l)
            {
                int k = layer - l;
                depths.Add(k);
                locations.Add(n.StartsWith("model.", StringComparison.Ordinal) ? $"model.layers.{{{l}+k}}.*" : $"layers.{{{l}+k}}.*");
            }
            else continue;
            count++;
        }
        // Qwen keeps fc/norms at top-level mtp.* even with one layer; a depth exists only with a block.
        return (depths.Count, count, locations.ToList());
    }

    [GeneratedRegex(@"^(?:model\.)?layers\.(\d+)\.(?:mlp|ffn)\.experts\.(\d+)\.")] private static partial Regex ExpertIndex();
    [GeneratedRegex(@"^(?:model\.)?layers\.(\d+)\.(?:mlp|ffn)\.experts\.(?:gate_up_proj|down_proj)$")] private static partial Regex StackedExperts();

    /// <summary>
    /// Config vs tensors and convention checks from headers: every main layer 0..L-1 present and none past it
    /// (unless MTP layers live there), routed expert count per layer equal to the config's, MTP tensors in one placement.
    /// </summary>
    static IEnumerable<string> CheckConventions(Checkpoint ck, int? layers, JsonObject? cfg, JsonObject? text, List<string> mtpLocations)
    {
        string cfgPath = System.IO.Path.Combine(ck.Directory, "config.json");
        string? fam = FamilyOf(Str(cfg, "model_type") ?? Str(text, "model_type"));
        var trainedNames = ck.Tensors.Where(t => t.Name.StartsWith("mtp.layers.", StringComparison.Ordinal)).Take(1).ToList();
        var quantizedNames = ck.Tensors.Where(t => t.Info.DType == DType.F8_E4M3).Take(1).ToList();
        if (FamilyRegistry.Module(fam) is { HfMtpUsesTrainingNames: false } && trainedNames.Count > 0 && quantizedNames.Count > 0
            && (trainedNames[0], quantizedNames[0]) is var (trained, quantized))
            yield return $"{trained.File.Path}: tensor '{trained.Name}': training-layout name in a checkpoint whose {System.IO.Path.GetFileName(quantized.File.Path)} holds HF FP8 weights ('{quantized.Name}'): files of two conventions?";
        // Decoder layers past num_hidden_layers (with or without "model.", as legacy V4 splits them) are one placement.
        var placements = mtpLocations.Where(l => !l.StartsWith("mtp.* ", StringComparison.Ordinal))
            .Select(l => l.Contains("+k}", StringComparison.Ordinal) ? "layers past num_hidden_layers" : l).Distinct().ToList();
        if (placements.Count > 1)
            yield return $"{ck.Directory}: MTP tensors use two conventions at once ({string.Join(", ", placements)}): files from different tools or layouts?";
        if (layers is int L && L >= 0)
        {
            var main = new SortedSet<int>();
            foreach (var t in ck.Tensors)
            {
                Match m = MainLayer().Match(t.Name);
                if (m.Success && int.TryParse(m.Groups[1].Value, out int n)) main.Add(n);
            }
            if (main.Count > 0)
            {
                var absent = Enumerable.Range(0, L).Where(i => !main.Contains(i)).ToList();
                if (absent.Count > 0)
                    yield return $"{cfgPath}: num_hidden_layers is {L} but no tensors hold layer(s) {string.Join(", ", absent.Take(10))}";
                bool mtpInline = placements.Contains("layers past num_hidden_layers");
                var beyond = main.Where(i => i >= L).ToList();
                if (beyond.Count > 0 && !mtpInline)
                    yield return $"{cfgPath}: num_hidden_layers is {L} but tensors hold layer(s) {string.Join(", ", beyond.Take(10))} (and MTP layers live elsewhere)";
            }
        }
        int? experts = Int(text, "n_routed_experts") ?? Int(cfg, "n_routed_experts") ?? Int(text, "num_experts") ?? Int(cfg, "num_experts");
        if (experts is int E && E > 0)
        {
            var perLayer = new Dictionary<int, SortedSet<int>>();
            foreach (var t in ck.Tensors)
            {
                Match m = ExpertIndex().Match(t.Name);
                if (m.Success && int.TryParse(m.Groups[1].Value, out int l) && int.TryParse(m.Groups[2].Value, out int e))
                {
                    if (!perLayer.TryGetValue(l, out var set)) perLayer[l] = set = new SortedSet<int>();
                    set.Add(e);
                }
                else if (StackedExperts().IsMatch(t.Name) && t.Info.Shape.Length == 3 && t.Info.Shape[0] != E)
                    yield return $"{t.File.Path}: tensor '{t.Name}': holds {t.Info.Shape[0]} experts but config.json says {E}";
            }
            foreach (var (l, set) in perLayer)
                if (set.Count != E || set.Max != E - 1)
                {
                    yield return $"{cfgPath}: {E} routed experts configured but layer {l} has {set.Count} (indices {set.Min}..{set.Max})";
                    break;
                }
        }
    }

    internal static string? Str(JsonObject? o, string key) =>
        o?[key] is JsonValue v && v.TryGetValue(out string? s) ? s : null;

    internal static int? Int(JsonObject? o, string key) =>
        o?[key] is JsonValue v && v.TryGetValue(out int i) ? i : null;
}
