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
    /// tensors and between 64 MB chunks of one.
    /// </summary>
    /// <exception cref="OperationCanceledException"><paramref name="cancel"/> was cancelled.</exception>
    public static VerifyReport Compare(string a, string b, double? tolerance, Func<string, bool>? include, CancellationToken cancel)
    {
        using Checkpoint ca = Checkpoint.Open(a);
        using Checkpoint cb = Checkpoint.Open(b);
        bool Wanted(string name) => include == null || include(name);
        var onlyA = ca.Tensors.Where(t => Wanted(t.Name) && !cb.Contains(t.Name)).Select(t => t.Name).ToList();
        var onlyB = cb.Tensors.Where(t => Wanted(t.Name) && !ca.Contains(t.Name)).Select(t => t.Name).ToList();
        var diffs = new List<TensorDifference>();
        int compared = 0;
        foreach (var ta in ca.Tensors)
        {
            if (!Wanted(ta.Name) || !cb.TryGet(ta.Name, out var tb)) continue;
            cancel.ThrowIfCancellationRequested();
            compared++;
            if (ta.Info.DType != tb.Info.DType) { diffs.Add(new(ta.Name, "dtype", $"{ta.Info.DType} vs {tb.Info.DType}", null, null, false)); continue; }
            if (!ta.Info.Shape.SequenceEqual(tb.Info.Shape)) { diffs.Add(new(ta.Name, "shape", $"{ta.Info.ShapeText} vs {tb.Info.ShapeText}", null, null, false)); continue; }
            if (BytesEqual(ta, tb, cancel)) continue;
            float[]? fa = ToFloats(ca, ta), fb = ToFloats(cb, tb);
            long first = -1;
            double max = double.NaN;
            if (fa != null && fb != null && fa.Length == fb.Length)
            {
                max = 0;
                for (long i = 0; i < fa.Length; i++)
                {
                    float x = fa[i], y = fb[i];
                    bool same = x.Equals(y);
                    if (!same && first < 0) first = i;
                    double d = Math.Abs((double)x - y);
                    if (double.IsNaN(d)) { if (!(float.IsNaN(x) && float.IsNaN(y))) max = double.PositiveInfinity; }
                    else if (d > max) max = d;
                }
                if (first < 0) first = FirstByteElement(ta, tb);
            }
            else first = FirstByteElement(ta, tb);
            bool ok = tolerance is double tol && !double.IsNaN(max) && max <= tol;
            diffs.Add(new(ta.Name, "bytes", $"first difference at element {first}, max abs difference {(double.IsNaN(max) ? "n/a" : max.ToString("G6"))}", first, max, ok));
        }
        return new VerifyReport(compared, onlyA, onlyB, diffs, tolerance);
    }

    static bool BytesEqual(TensorLocation a, TensorLocation b, CancellationToken cancel)
    {
        var da = a.File.GetData(a.Info); var db = b.File.GetData(b.Info);
        if (da.Length != db.Length) return false;
        const int chunk = 1 << 26;
        for (long off = 0; off < da.Length; off += chunk)
        {
            cancel.ThrowIfCancellationRequested();
            int n = (int)Math.Min(chunk, da.Length - off);
            if (!da.Slice(off, n).SequenceEqual(db.Slice(off, n))) return false;
        }
        return true;
    }

    static long FirstByteElement(TensorLocation a, TensorLocation b)
    {
        var da = a.File.GetData(a.Info); var db = b.File.GetData(b.Info);
        int bits = a.Info.DType.Bits();
        for (long i = 0; i < da.Length; i++)
            if (da.Slice(i, 1)[0] != db.Slice(i, 1)[0]) return i * 8 / bits;
        return -1;
    }

    static string? ScaleOf(Checkpoint c, string w)
    {
        if (c.Contains(w + "_scale_inv")) return w + "_scale_inv";
        string v4 = w.EndsWith(".weight", StringComparison.Ordinal) ? w[..^7] + ".scale" : w + ".scale";
        return c.Contains(v4) ? v4 : null;
    }

    /// <summary>Values as floats (dequantized when the tensor is a quantized weight with a scale); null when too large or not numeric.</summary>
    static float[]? ToFloats(Checkpoint c, TensorLocation t)
    {
        if (t.Info.ByteLength > 1L << 30) return null;
        ReadOnlySpan<byte> s = t.File.GetBytes(t.Info);
        long n = t.Info.ElementCount;
        var o = new float[t.Info.DType == DType.I8 ? s.Length : n];
        string? scale = ScaleOf(c, t.Name);
        try
        {
            if (scale != null && t.Info.Shape.Length == 2 && t.Info.DType is DType.F8_E4M3 or DType.I8)
            {
                var sl = c.Get(scale);
                var bytes = new byte[(t.Info.DType == DType.I8 ? t.Info.Shape[1] * 2 : t.Info.Shape[1]) * t.Info.Shape[0] * 4];
                int rows = (int)t.Info.Shape[0];
                var opts = new KernelOptions { AllowNonFiniteScales = true };
                if (t.Info.DType == DType.F8_E4M3)
                {
                    int cols = (int)t.Info.Shape[1];
                    var sf = sl.Info.DType switch { DType.F32 => ScaleFormat.F32, DType.BF16 => ScaleFormat.BF16, _ => ScaleFormat.E8M0 };
                    var block = new BlockSize((int)Math.Ceiling(rows / (double)sl.Info.Shape[0]), (int)Math.Ceiling(cols / (double)sl.Info.Shape[1]));
                    block = Converter.BlockOf(c.Config ?? new JsonObject()) is var bs && bs.GridFor(rows, cols) == ((int)sl.Info.Shape[0], (int)sl.Info.Shape[1]) ? bs : block;
                    BlockDequant.Fp8(s, rows, cols, sl.File.GetBytes(sl.Info), sf, block, bytes, FloatFormat.F32, opts);
                }
                else
                {
                    int cols = (int)t.Info.Shape[1] * 2;
                    BlockDequant.Fp4(s, rows, cols, sl.File.GetBytes(sl.Info), cols / (int)sl.Info.Shape[1], bytes, FloatFormat.F32, opts);
                }
                return System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(bytes).ToArray();
            }
        }
        catch (Exception e) when (e is ArgumentException or InvalidDataException) { /* fall back to raw values */ }
        for (long i = 0; i < o.Length; i++)
        {
            o[i] = t.Info.DType switch
            {
                DType.F32 => BitConverter.ToSingle(s.Slice((int)i * 4, 4)),
                DType.BF16 => BFloat16.ToFloat(BitConverter.ToUInt16(s.Slice((int)i * 2, 2))),
                DType.F16 => (float)BitConverter.ToHalf(s.Slice((int)i * 2, 2)),
                DType.F8_E4M3 => Fp8E4M3.ToFloat(s[(int)i]),
                DType.F8_E8M0 => E8M0.ToFloat(s[(int)i]),
                DType.I8 => (sbyte)s[(int)i],
                DType.U8 or DType.BOOL => s[(int)i],
                DType.I32 => BitConverter.ToInt32(s.Slice((int)i * 4, 4)),
                DType.I64 => BitConverter.ToInt64(s.Slice((int)i * 8, 8)),
                _ => float.NaN,
            };
        }
        return o;
    }
}
