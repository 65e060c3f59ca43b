using System.Text.Json.Nodes;
using Mtp.Quant;
using Mtp.SafeTensors;

namespace Mtp.Adapters;

/// <summary>One tensor that differs between two checkpoints.</summary>
/// <param name="Name">Tensor name.</param>
/// <param name="Kind">"dtype", "shape" or "bytes".</param>
/// <param name="Detail">Human-readable description.</param>
/// <param name="FirstIndex">Flat index of the first differing element (bytes differences only).</param>
/// <param name="MaxAbsDiff">Largest absolute difference after dequantization (bytes differences only; NaN when not comparable).</param>
/// <param name="WithinTolerance">Whether the difference is within the requested tolerance.</param>
public sealed record TensorDifference(string Name, string Kind, string Detail, long? FirstIndex, double? MaxAbsDiff, bool WithinTolerance);

/// <summary>The outcome of comparing two checkpoints.</summary>
/// <param name="Compared">Tensors present in both.</param>
/// <param name="OnlyInA">Names only in the first.</param>
/// <param name="OnlyInB">Names only in the second.</param>
/// <param name="Differences">Tensors that differ.</param>
/// <param name="Tolerance">The tolerance used, if any.</param>
public sealed record VerifyReport(int Compared, IReadOnlyList<string> OnlyInA, IReadOnlyList<string> OnlyInB, IReadOnlyList<TensorDifference> Differences, double? Tolerance)
{
    /// <summary>Same names, dtypes, shapes and bytes.</summary>
    public bool Identical => OnlyInA.Count == 0 && OnlyInB.Count == 0 && Differences.Count == 0;

    /// <summary>Identical, or every difference within the tolerance.</summary>
    public bool Passed => OnlyInA.Count == 0 && OnlyInB.Count == 0 && Differences.All(d => d.WithinTolerance);

    /// <summary>JSON form of the report.</summary>
    public JsonObject ToJson() => new()
    {
        ["identical"] = Identical, ["passed"] = Passed, ["compared"] = Compared, ["tolerance"] = Tolerance,
        ["only_in_a"] = new JsonArray(OnlyInA.Select(n => (JsonNode)JsonValue.Create(n)!).ToArray()),
        ["only_in_b"] = new JsonArray(OnlyInB.Select(n => (JsonNode)JsonValue.Create(n)!).ToArray()),
        ["differences"] = new JsonArray(Differences.Select(d => (JsonNode)new JsonObject
        {
            ["name"] = d.Name, ["kind"] = d.Kind, ["detail"] = d.Detail, ["first_index"] = d.FirstIndex,
            ["max_abs_diff"] = d.MaxAbsDiff is double m && double.IsFinite(m) ? m : null, ["within_tolerance"] = d.WithinTolerance,
        }).ToArray()),
    };

    /// <summary>
    /// The report <see cref="ToJson"/> wrote (a max abs difference that was not finite reads back as NaN), so that reports of
    /// disjoint tensor sets made on several machines can be merged.
    /// </summary>
    /// <exception cref="FormatException">A field is missing or of the wrong kind (the message names it).</exception>
    public static VerifyReport FromJson(JsonObject json)
    {
        static T Field<T>(JsonObject o, string key) =>
            o[key] is JsonValue v && v.TryGetValue(out T? x) ? x : throw new FormatException($"'{key}' is missing or not a {typeof(T).Name}");
        static List<string> Names(JsonObject o, string key) =>
            (o[key] as JsonArray ?? throw new FormatException($"'{key}' is missing or not a list"))
            .Select(n => n is JsonValue v && v.TryGetValue(out string? s) ? s : throw new FormatException($"'{key}' holds a value that is not a name")).ToList();
        var diffs = (json["differences"] as JsonArray ?? throw new FormatException("'differences' is missing or not a list")).Select(n =>
        {
            var d = n as JsonObject ?? throw new FormatException("'differences' holds a value that is not an object");
            return new TensorDifference(Field<string>(d, "name"), Field<string>(d, "kind"), Field<string>(d, "detail"),
                d["first_index"] is null ? null : Field<long>(d, "first_index"),
                d["max_abs_diff"] is null ? (d["kind"]?.GetValue<string>() == "bytes" ? double.NaN : null) : Field<double>(d, "max_abs_diff"),
                Field<bool>(d, "within_tolerance"));
        }).ToList();
        return new VerifyReport(Field<int>(json, "compared"), Names(json, "only_in_a"), Names(json, "only_in_b"), diffs,
            json["tolerance"] is null ? null : Field<double>(json, "tolerance"));
    }
}

/// <summary>Compares two checkpoints tensor by tensor.</summary>
public static class Verifier
{
    /// <summary>Compares names, dtypes, shapes and bytes; on a bytes difference reports the first differing element and the
    /// max abs difference after dequantization (FP8 / packed FP4 weights with their scales).</summary>
    public static VerifyReport Compare(string a, string b, double? tolerance = null) => Compare(a, b, tolerance, null, CancellationToken.None);

    /// <summary>
    /// <see cref="Compare(string, string, double?)"/> restricted to the tensor names <paramref name="include"/> accepts (all when
    /// null), so that one machine can check its share of a split conversion; <paramref name="cancel"/> is observed between
    /// tensors and between 8 MiB chunks of one.
    /// </summary>
    /// <exception cref="OperationCanceledException"><paramref name="cancel"/> was cancelled.</exception>
    public static VerifyReport Compare(string a, string b, double? tolerance, Func<string, bool>? include, CancellationToken cancel)
    {
        using Checkpoint ca = Checkpoint.Open(a);
        using Checkpoint cb = Checkpoint.Open(b);
        using var ra = new TensorReader();
        using var rb = new TensorReader();
        var bufA = new byte[ChunkCompare.ChunkBytes];
        var bufB = new byte[ChunkCompare.ChunkBytes];
        bool Wanted(string name) => include == null || include(name);
        var onlyA = ca.Tensors.Where(t => Wanted(t.Name) && !cb.Contains(t.Name)).Select(t => t.Name).ToList();
        var onlyB = cb.Tensors.Where(t => Wanted(t.Name) && !ca.Contains(t.Name)).Select(t => t.Name).ToList();
        var diffs = new List<TensorDifference>();
        int compared = 0;
        // in A's file order, so that each shard is read front to back
        foreach (var ta in ca.Tensors.OrderBy(t => t.File.Path, StringComparer.Ordinal).ThenBy(t => t.Info.Begin))
        {
            if (!Wanted(ta.Name) || !cb.TryGet(ta.Name, out var tb)) continue;
            cancel.ThrowIfCancellationRequested();
            compared++;
            if (ta.Info.DType != tb.Info.DType) { diffs.Add(new(ta.Name, "dtype", $"{ta.Info.DType} vs {tb.Info.DType}", null, null, false)); continue; }
            if (!ta.Info.Shape.SequenceEqual(tb.Info.Shape)) { diffs.Add(new(ta.Name, "shape", $"{ta.Info.ShapeText} vs {tb.Info.ShapeText}", null, null, false)); continue; }
            long firstByte = ChunkCompare.FirstDifference(ra, ta, rb, tb, bufA, bufB, cancel);
            if (firstByte < 0) continue;
            var (first, max) = ChunkCompare.Difference(ca, ra, ta, ScaleOf(ca, ta.Name), cb, rb, tb, ScaleOf(cb, tb.Name), firstByte, cancel);
            bool ok = tolerance is double tol && !double.IsNaN(max) && max <= tol;
            diffs.Add(new(ta.Name, "bytes", $"first difference at element {first}, max abs difference {(double.IsNaN(max) ? "n/a" : max.ToString("G6"))}", first, max, ok));
        }
        // the report lists differences in A's tensor order, whatever order the files were read in
        var rank = ca.Tensors.Select((t, i) => (t.Name, i)).ToDictionary(x => x.Name, x => x.i, StringComparer.Ordinal);
        diffs.Sort((x, y) => rank[x.Name].CompareTo(rank[y.Name]));
        return new VerifyReport(compared, onlyA, onlyB, diffs, tolerance);
    }

    static string? ScaleOf(Checkpoint c, string w) => FamilyRegistry.ScaleNameCandidates(w).FirstOrDefault(c.Contains);
}
