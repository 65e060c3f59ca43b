using System.Text.Json.Nodes;
using Mtp.Adapters;
using Mtp.SafeTensors;

namespace Mtp.Cli.Inspect;

/// <summary>Finds block-quantized weights and their scales from headers, and checks scale grids.</summary>
static class QuantScan
{
    public sealed record Result(List<string> Schemes, int Fp8, int Fp4, int Problems, int Malformed = 0);

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
        JsonObject? qc = (cfg?["quantization_config"] ?? text?["quantization_config"]) as JsonObject;
        (int B0, int B1)? block = null;
        int fp8 = 0, fp4 = 0, bad = 0, malformed = 0;
        if (qc?["weight_block_size"] is JsonNode wbNode)
        {
            if (wbNode is JsonArray wb && wb.Count == 2 && wb[0] is JsonValue v0 && v0.TryGetValue(out int b0) && b0 > 0
                && wb[1] is JsonValue v1 && v1.TryGetValue(out int b1) && b1 > 0)
                block = (b0, b1);
            else
            {
                problems.Add($"{System.IO.Path.Combine(ck.Directory, "config.json")}: quantization_config.weight_block_size {wbNode.ToJsonString()} is not two positive integers");
                bad++;
            }
        }
        var fp8Scales = new SortedSet<string>(StringComparer.Ordinal);
        var fp4Scales = new SortedSet<string>(StringComparer.Ordinal);
        var fp8ScaleFiles = new SortedDictionary<string, string>(StringComparer.Ordinal);
        var scaleTensors = new List<(TensorLocation Scale, string Weight, bool Fp4)>();
        foreach (var t in ck.Tensors)
        {
            TensorInfo w = t.Info;
            bool isFp8 = w.DType == DType.F8_E4M3;
            bool maybeFp4 = w.DType is DType.F4 or DType.I8;
            if (!isFp8 && !maybeFp4) continue;
            TensorLocation? s = ScaleOf(ck, w.Name);
            if (s is null && inOtherShards is not null && ScaleElsewhere(w.Name, inOtherShards)) continue; // one shard inspected alone
            if (s is null)
            {
                if (isFp8 || w.DType == DType.F4)
                {
                    problems.Add($"{t.File.Path}: tensor '{w.Name}': {w.DType} weight has no scale tensor ({ScaleSuffixes()})");
                    bad++;
                }
                continue;
            }
            TensorInfo sc = s.Value.Info;
            if (w.Shape.Length != 2 || sc.Shape.Length != 2)
            {
                problems.Add($"{t.File.Path}: tensor '{w.Name}': quantized weight {w.ShapeText} and scale {sc.ShapeText} must both be 2-D");
                bad++; malformed++;
                continue;
            }
            long rows = w.Shape[0];
            if (isFp8)
            {
                fp8++;
                fp8Scales.Add(sc.DType.Name());
                fp8ScaleFiles.TryAdd(sc.DType.Name(), System.IO.Path.GetFileName(s.Value.File.Path));
                scaleTensors.Add((s.Value, w.Name, false));
                var (b0, b1) = block ?? (128, 128);
                long g0 = (rows + b0 - 1) / b0, g1 = (w.Shape[1] + b1 - 1) / b1;
                if (sc.Shape[0] != g0 || sc.Shape[1] != g1)
                {
                    problems.Add($"{s.Value.File.Path}: tensor '{sc.Name}': scale grid {sc.ShapeText} does not fit weight '{w.Name}' {w.ShapeText} with block {b0}x{b1} (expected [{g0}, {g1}])");
                    bad++; malformed++;
                }
            }
            else
            {
                long cols = w.DType == DType.I8 ? w.Shape[1] * 2 : w.Shape[1];
                if (sc.DType != DType.F8_E8M0 || sc.Shape[0] != rows || sc.Shape[1] <= 0 || cols % sc.Shape[1] != 0)
                {
                    problems.Add($"{s.Value.File.Path}: tensor '{sc.Name}': {sc.DType} {sc.ShapeText} is not an FP4 group scale for '{w.Name}' {w.ShapeText}");
                    bad++; malformed++;
                    continue;
                }
                fp4++;
                scaleTensors.Add((s.Value, w.Name, true));
                fp4Scales.Add($"{sc.DType.Name()} per {cols / sc.Shape[1]} columns");
            }
        }
        if (fp8ScaleFiles.Count > 1)
        {
            problems.Add($"{ck.Directory}: FP8 scales are stored in two conventions ({string.Join("; ", fp8ScaleFiles.Select(kv => $"{kv.Key} in {kv.Value}"))})");
            bad++;
        }
        int[] nonFiniteCounts = reader.CountNonFinite(scaleTensors.Select(x => (x.Scale, x.Fp4)).ToList());
        for (int k = 0; k < scaleTensors.Count; k++)
        {
            var (loc, weight, _) = scaleTensors[k];
            int nonFinite = nonFiniteCounts[k];
            if (nonFinite > 0)
            {
                problems.Add($"{loc.File.Path}: tensor '{loc.Name}': {nonFinite} scale(s) are NaN or infinite (E8M0 0xFF), so '{weight}' cannot be dequantized");
                bad++; malformed++;
            }
        }
        var schemes = new List<string>();
        if (fp8 > 0)
        {
            string b = block is { } bb ? $"{bb.B0}x{bb.B1}" : "128x128 (assumed: config has no weight_block_size)";
            schemes.Add($"FP8 E4M3 block {b}, scale {string.Join("/", fp8Scales)} ({fp8} weights)");
        }
        if (fp4 > 0) schemes.Add($"FP4 E2M1 packed, scale {string.Join("/", fp4Scales)} ({fp4} weights)");
        if (schemes.Count == 0) schemes.Add("none");
        return new Result(schemes, fp8, fp4, bad, malformed);
    }
}
