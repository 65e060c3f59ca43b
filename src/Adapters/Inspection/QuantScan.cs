using System.Text.Json.Nodes;
using Mtp.SafeTensors;
using Mtp.Quant;

namespace Mtp.Adapters.Inspection;

/// <summary>Finds block-quantized weights and their scales from headers, and checks scale grids.</summary>
static class QuantScan
{
    public sealed record Result(List<string> Schemes, int Fp8, int Fp4, int Problems, int Malformed = 0);

    /// <summary>What one scan has found so far.</summary>
    sealed class Tally(Checkpoint ck, List<string> problems)
    {
        public readonly Checkpoint Ck = ck;
        public readonly List<string> Problems = problems;
        public (int B0, int B1)? Block;
        // The family's row-chunked blocks (QuantScheme.RowChunks) and how many weights use each.
        public QuantScheme? Scheme;
        public JsonObject? Text;
        public readonly SortedDictionary<string, int> Chunked = new(StringComparer.Ordinal);
        public int Fp8, Fp4, Bad, Malformed;
        public readonly SortedSet<string> Fp8Scales = new(StringComparer.Ordinal), Fp4Scales = new(StringComparer.Ordinal);
        public readonly SortedDictionary<string, string> Fp8ScaleFiles = new(StringComparer.Ordinal);
        public readonly List<(TensorLocation Scale, string Weight, bool Fp4)> ScaleTensors = new();

        public void Problem(string message, bool malformed)
        {
            Problems.Add(message);
            Bad++;
            if (malformed) Malformed++;
        }
    }

    /// <summary>The scale tensor of a quantized weight, under any registered family's naming.</summary>
    static TensorLocation? ScaleOf(Checkpoint ck, string weight)
    {
        foreach (string candidate in FamilyRegistry.ScaleNameCandidates(weight))
            if (ck.TryGet(candidate, out var loc)) return loc;
        return null;
    }

    static bool ScaleElsewhere(string weight, IReadOnlySet<string> names) => FamilyRegistry.ScaleNameCandidates(weight).Any(names.Contains);

    /// <summary>The scale suffixes for a message (".weight_scale_inv or .scale").</summary>
    static string ScaleSuffixes() => string.Join(" or ", FamilyRegistry.ScaleNameCandidates("w.weight").Select(n => n[1..]));

    public static Result Scan(Checkpoint ck, JsonObject? cfg, JsonObject? text, List<string> problems, ScaleReader reader, IReadOnlySet<string>? inOtherShards = null)
    {
        var x = new Tally(ck, problems);
        ReadBlock(x, (cfg?["quantization_config"] ?? text?["quantization_config"]) as JsonObject);
        if (cfg is not null) (x.Scheme, x.Text) = (FamilyRegistry.SchemeOf(cfg), ConfigValues.TextConfig(cfg));
        foreach (var t in ck.Tensors)
        {
            TensorInfo w = t.Info;
            if (w.DType is not (DType.F8_E4M3 or DType.F4 or DType.I8)) continue;
            TensorLocation? s = ScaleOf(ck, w.Name);
            if (s is null && inOtherShards is not null && ScaleElsewhere(w.Name, inOtherShards)) continue; // one shard inspected alone
            if (s is null)
            {
                if (w.DType is DType.F8_E4M3 or DType.F4)
                    x.Problem($"{t.File.Path}: tensor '{w.Name}': {w.DType} weight has no scale tensor ({ScaleSuffixes()})", false);
                continue;
            }
            if (w.Shape.Length != 2 || s.Value.Info.Shape.Length != 2)
                x.Problem($"{t.File.Path}: tensor '{w.Name}': quantized weight {w.ShapeText} and scale {s.Value.Info.ShapeText} must both be 2-D", true);
            else if (w.DType == DType.F8_E4M3) CheckFp8(x, w, s.Value);
            else CheckFp4(x, w, s.Value);
        }
        if (x.Fp8ScaleFiles.Count > 1)
            x.Problem($"{ck.Directory}: FP8 scales are stored in two conventions ({string.Join("; ", x.Fp8ScaleFiles.Select(kv => $"{kv.Key} in {kv.Value}"))})", false);
        CheckFinite(x, reader);
        return new Result(Schemes(x), x.Fp8, x.Fp4, x.Bad, x.Malformed);
    }

    static void ReadBlock(Tally x, JsonObject? qc)
    {
        if (CompressedTensors.Is(qc))
        {
            try
            {
                var b = CompressedTensors.BlockOf(qc!);
                x.Block = (b.Rows, b.Cols);
            }
            catch (AdapterException e) { x.Problem($"{System.IO.Path.Combine(x.Ck.Directory, e.Message)}", false); }
            return;
        }
        if (qc?["weight_block_size"] is not JsonNode wbNode) return;
        if (wbNode is JsonArray wb && wb.Count == 2 && wb[0] is JsonValue v0 && v0.TryGetValue(out int b0) && b0 > 0
            && wb[1] is JsonValue v1 && v1.TryGetValue(out int b1) && b1 > 0)
            x.Block = (b0, b1);
        else
            x.Problem($"{System.IO.Path.Combine(x.Ck.Directory, "config.json")}: quantization_config.weight_block_size {wbNode.ToJsonString()} is not two positive integers", false);
    }

    static void CheckFp8(Tally x, TensorInfo w, TensorLocation s)
    {
        TensorInfo sc = s.Info;
        x.Fp8++;
        x.Fp8Scales.Add(sc.DType.Name());
        x.Fp8ScaleFiles.TryAdd(sc.DType.Name(), System.IO.Path.GetFileName(s.File.Path));
        x.ScaleTensors.Add((s, w.Name, false));
        var (b0, b1) = x.Block ?? (128, 128);
        int rows = checked((int)w.Shape[0]), cols = checked((int)w.Shape[1]);
        BlockSize block = TensorBlocks.Of(x.Scheme, x.Text, w.Name, rows, cols, new BlockSize(b0, b1), sc.Shape);
        var (g0, g1) = block.GridFor(rows, cols);
        if (sc.Shape[0] != g0 || sc.Shape[1] != g1)
            x.Problem($"{s.File.Path}: tensor '{sc.Name}': scale grid {sc.ShapeText} does not fit weight '{w.Name}' {w.ShapeText} with {TensorBlocks.Expected(x.Scheme, x.Text, w.Name, rows, cols, new BlockSize(b0, b1))}", true);
        else if (block.RowChunk > 0) x.Chunked[block.ToString()] = x.Chunked.GetValueOrDefault(block.ToString()) + 1;
    }

    static void CheckFp4(Tally x, TensorInfo w, TensorLocation s)
    {
        TensorInfo sc = s.Info;
        long cols = w.DType == DType.I8 ? w.Shape[1] * 2 : w.Shape[1];
        if (sc.DType != DType.F8_E8M0 || sc.Shape[0] != w.Shape[0] || sc.Shape[1] <= 0 || cols % sc.Shape[1] != 0)
        {
            x.Problem($"{s.File.Path}: tensor '{sc.Name}': {sc.DType} {sc.ShapeText} is not an FP4 group scale for '{w.Name}' {w.ShapeText}", true);
            return;
        }
        x.Fp4++;
        x.ScaleTensors.Add((s, w.Name, true));
        x.Fp4Scales.Add($"{sc.DType.Name()} per {cols / sc.Shape[1]} columns");
    }

    static void CheckFinite(Tally x, ScaleReader reader)
    {
        int[] nonFiniteCounts = reader.CountNonFinite(x.ScaleTensors.Select(t => (t.Scale, t.Fp4)).ToList());
        for (int k = 0; k < x.ScaleTensors.Count; k++)
        {
            var (loc, weight, _) = x.ScaleTensors[k];
            if (nonFiniteCounts[k] > 0)
                x.Problem($"{loc.File.Path}: tensor '{loc.Name}': {nonFiniteCounts[k]} scale(s) are NaN or infinite (E8M0 0xFF), so '{weight}' cannot be dequantized", true);
        }
    }

    static List<string> Schemes(Tally x)
    {
        var schemes = new List<string>();
        if (x.Fp8 > 0)
        {
            string b = x.Block is { } bb ? new BlockSize(bb.B0, bb.B1) is { IsPerRow: true } ? "per-row (compressed-tensors channel)" : $"block {bb.B0}x{bb.B1}"
                : "block 128x128 (assumed: config has no weight_block_size)";
            string chunked = string.Concat(x.Chunked.Select(kv => $"; {kv.Value} with block {kv.Key}"));
            schemes.Add($"FP8 E4M3 {b}, scale {string.Join("/", x.Fp8Scales)} ({x.Fp8} weights{chunked})");
        }
        if (x.Fp4 > 0) schemes.Add($"FP4 E2M1 packed, scale {string.Join("/", x.Fp4Scales)} ({x.Fp4} weights)");
        if (schemes.Count == 0) schemes.Add("none");
        return schemes;
    }
}
