using System.Text;
using System.Text.Json.Nodes;
using Mtp.Cli;
using Mtp.SafeTensors;
using Mtp.Tests.Shared;

namespace Mtp.Reliability.Tests;

/// <summary>The base a corpus case starts from: an HF fixture, or its conversion to the training layout.</summary>
public enum CorpusBase { Hf, Native, HfV4, NativeV4 }

/// <summary>
/// One malformed checkpoint: made by <see cref="Apply"/> from a copy of its base, with the exit code each command must
/// return. <see cref="Verify"/> is the code of <c>verify CASE BASE</c> (tensor-level problems read as 6, different;
/// config-only problems as 0, since verify compares tensors).
/// </summary>
public sealed record CorpusCase(string Name, string Category, CorpusBase Base, int Expected, Action<string> Apply)
{
    /// <summary>inspect's code (null: same as Expected). inspect reads headers, config and scales, not weights.</summary>
    public int? Inspect { get; init; }
    /// <summary>verify's code (null: same as Expected).</summary>
    public int? Verify { get; init; }
    /// <summary>The error names a tensor (the JSON "tensor" field is set).</summary>
    public bool NamesTensor { get; init; }
    public override string ToString() => $"{Category}/{Name}";
}

/// <summary>Generates the malformed-checkpoint corpus from the smallest fixtures.</summary>
public static class Corpus
{
    const int M = ExitCodes.Malformed, I = ExitCodes.Inconsistent, D = ExitCodes.Different, Ok = ExitCodes.Ok;

    static readonly object Gate = new();
    static string? _root;

    /// <summary>Directory holding the pristine bases (built once per test run).</summary>
    public static string BaseDir(CorpusBase b)
    {
        lock (Gate)
        {
            if (_root == null)
            {
                string root = RepoPaths.NewTempDir("corpus-bases");
                CopyDir(Path.Combine(RepoPaths.Fixtures, "deepseek-v3"), Path.Combine(root, "hf"));
                CopyDir(Path.Combine(RepoPaths.Fixtures, "deepseek-v4-flash"), Path.Combine(root, "hfv4"));
                foreach (var (src, dst) in new[] { ("hf", "native"), ("hfv4", "nativev4") })
                {
                    var (code, _, err) = CliRunner.Run("convert", Path.Combine(root, src), Path.Combine(root, dst), "--to", "native", "--max-shard-size", "100kB", "--json");
                    if (code != 0) throw new InvalidOperationException("base conversion failed: " + err);
                }
                _root = root;
                AppDomain.CurrentDomain.ProcessExit += (_, _) => { try { Directory.Delete(root, true); } catch (IOException) { } };
            }
            return Path.Combine(_root, b switch { CorpusBase.Hf => "hf", CorpusBase.HfV4 => "hfv4", CorpusBase.Native => "native", _ => "nativev4" });
        }
    }

    public static void CopyDir(string from, string to)
    {
        Directory.CreateDirectory(to);
        foreach (string f in Directory.GetFiles(from)) File.Copy(f, Path.Combine(to, Path.GetFileName(f)));
    }

    // ------------------------------------------------------------------ file surgery

    public static (byte[] Header, byte[] Data) Split(string file)
    {
        byte[] b = File.ReadAllBytes(file);
        long n = (long)BitConverter.ToUInt64(b, 0);
        return (b[8..(int)(8 + n)], b[(int)(8 + n)..]);
    }

    public static void Join(string file, byte[] header, byte[] data, ulong? lengthWord = null)
    {
        var outb = new byte[8 + header.Length + data.Length];
        BitConverter.TryWriteBytes(outb.AsSpan(0, 8), lengthWord ?? (ulong)header.Length);
        header.CopyTo(outb, 8);
        data.CopyTo(outb, 8 + header.Length);
        File.WriteAllBytes(file, outb);
    }

    /// <summary>Edits the header JSON text of a shard, keeping the data.</summary>
    public static void EditHeaderText(string file, Func<string, string> edit)
    {
        var (h, d) = Split(file);
        Join(file, Encoding.UTF8.GetBytes(edit(Encoding.UTF8.GetString(h))), d);
    }

    /// <summary>Edits the header as a JSON object, keeping the data.</summary>
    public static void EditHeader(string file, Action<JsonObject> edit)
    {
        EditHeaderText(file, t =>
        {
            var o = JsonNode.Parse(t)!.AsObject();
            edit(o);
            return o.ToJsonString();
        });
    }

    /// <summary>The first tensor entry of a header (optionally the first whose name contains <paramref name="contains"/>).</summary>
    static (string Name, JsonObject Entry) Entry(JsonObject h, Func<string, JsonObject, bool>? pick = null) =>
        h.Where(kv => kv.Key != "__metadata__" && (pick == null || pick(kv.Key, kv.Value!.AsObject())))
         .Select(kv => (kv.Key, kv.Value!.AsObject())).First();

    /// <summary>Rewrites a shard through the writer: tensors may be changed, added or removed.</summary>
    public static void Rewrite(string file, Func<List<(TensorSpec Spec, byte[] Data)>, List<(TensorSpec Spec, byte[] Data)>> edit)
    {
        List<(TensorSpec, byte[])> list;
        Dictionary<string, string> md;
        using (var f = SafeTensorsFile.Open(file))
        {
            list = f.Tensors.Select(t => (new TensorSpec(t.Name, t.DType, t.Shape), f.GetBytes(t).ToArray())).ToList();
            md = f.Metadata.ToDictionary(kv => kv.Key, kv => kv.Value);
        }
        var edited = edit(list);
        File.Delete(file);
        SafeTensorsWriter.WriteFile(file, edited, md);
    }

    /// <summary>Changes one tensor's bytes in place.</summary>
    public static void PatchTensor(string file, string name, Action<byte[]> patch) => Rewrite(file, l => l.Select(t =>
    {
        if (t.Spec.Name != name) return t;
        var d = (byte[])t.Data.Clone();
        patch(d);
        return (t.Spec, d);
    }).ToList());

    static void EditJson(string file, Action<JsonObject> edit)
    {
        var o = JsonNode.Parse(File.ReadAllText(file))!.AsObject();
        edit(o);
        File.WriteAllText(file, o.ToJsonString());
    }

    static string Shard(string dir, int i = 0)
    {
        var s = Directory.GetFiles(dir, "*.safetensors").OrderBy(x => x, StringComparer.Ordinal).ToArray();
        return s[Math.Min(i, s.Length - 1)];
    }

    static string IndexOf(string dir) => Path.Combine(dir, ShardIndex.FileName);
    static string ConfigOf(string dir) => Path.Combine(dir, "config.json");

    static void Truncate(string file, long len)
    {
        using var fs = new FileStream(file, FileMode.Open, FileAccess.Write);
        fs.SetLength(len);
    }

    /// <summary>Moves one tensor's entry from shard 0 to the index's weight_map of another file (or removes it).</summary>
    static string FirstTensorOf(string file, Func<TensorInfo, bool>? pick = null)
    {
        using var f = SafeTensorsFile.Open(file);
        return f.Tensors.First(t => pick == null || pick(t)).Name;
    }

    static void SetConfigInt(string dir, string key, Func<int, int> f) => EditJson(ConfigOf(dir), c =>
    {
        var o = c["text_config"] is JsonObject t && t[key] != null ? t : c;
        o[key] = f(o[key]!.GetValue<int>());
    });

    // ------------------------------------------------------------------ the corpus

    public static IEnumerable<CorpusCase> All()
    {
        var cases = new List<CorpusCase>();
        foreach (var b in new[] { CorpusBase.Hf, CorpusBase.Native })
        {
            cases.AddRange(Truncations(b));
            cases.AddRange(HeaderRules(b));
            cases.AddRange(IndexRules(b));
        }
        cases.AddRange(ConfigRules());
        cases.AddRange(Numeric());
        return cases;
    }

    static IEnumerable<CorpusCase> Truncations(CorpusBase b)
    {
        string dir = BaseDir(b);
        string shard = Shard(dir);
        string shardName = Path.GetFileName(shard);
        long length = new FileInfo(shard).Length;
        var (h, _) = Split(shard);
        long dataStart = 8 + h.Length;
        var points = new SortedDictionary<long, string>
        {
            [0] = "empty file", [4] = "inside the length word", [8] = "after the length word", [8 + h.Length / 2] = "mid-header",
            [dataStart - 1] = "last header byte", [dataStart] = "end of header (no data)", [length - 1] = "last data byte",
        };
        using (var f = SafeTensorsFile.Open(shard))
            foreach (var t in f.Tensors.Where(t => t.ByteLength > 0))
            {
                points.TryAdd(dataStart + t.Begin, $"start of '{t.Name}'");
                points.TryAdd(dataStart + t.Begin + t.ByteLength / 2, $"middle of '{t.Name}'");
            }
        foreach (var (at, what) in points)
        {
            if (at >= length || at < 0) continue;
            long len = at;
            yield return new CorpusCase($"{b}: {shardName} cut at {len} ({what})", "truncation", b, M,
                d => Truncate(Path.Combine(d, shardName), len));
        }
        if (File.Exists(IndexOf(dir)))
            yield return new CorpusCase($"{b}: index cut in half", "truncation", b, I, d => Truncate(IndexOf(d), new FileInfo(IndexOf(d)).Length / 2))
            { Verify = I };
        yield return new CorpusCase($"{b}: config.json cut in half", "truncation", b, M, d => Truncate(ConfigOf(d), new FileInfo(ConfigOf(d)).Length / 2))
        { Verify = M };
    }

    static IEnumerable<CorpusCase> HeaderRules(CorpusBase b)
    {
        string shardName = Path.GetFileName(Shard(BaseDir(b)));
        CorpusCase H(string name, Action<string> apply, bool tensor = false) =>
            new($"{b}: {name}", "header", b, M, d => apply(Path.Combine(d, shardName))) { NamesTensor = tensor };
        CorpusCase E(string name, Action<JsonObject> edit) =>
            H(name, f => EditHeader(f, h => edit(Entry(h).Entry)), tensor: true);

        yield return H("length word over the 100 MB cap", f => { var (h, d) = Split(f); Join(f, h, d, 100_000_001); });
        yield return H("length word = u64 max", f => { var (h, d) = Split(f); Join(f, h, d, ulong.MaxValue); });
        yield return H("length word past end of file", f => { var (h, d) = Split(f); Join(f, h, d, (ulong)(h.Length + d.Length + 1)); });
        yield return H("length word 0", f => { var (h, d) = Split(f); Join(f, h, d, 0); });
        yield return H("length word 1 short", f => { var (h, d) = Split(f); Join(f, h, d, (ulong)h.Length - 1); });
        yield return H("header not JSON", f => { var (h, d) = Split(f); h.AsSpan().Fill((byte)'x'); h[0] = (byte)'{'; Join(f, h, d); });
        yield return H("header does not start with {", f => { var (h, d) = Split(f); h[0] = (byte)'['; Join(f, h, d); });
        yield return H("header invalid UTF-8", f => { var (h, d) = Split(f); h[3] = 0xFF; Join(f, h, d); });
        yield return H("header a JSON array", f => EditHeaderText(f, t => "{" == t[..1] ? "[" + t + "]" : t));
        yield return H("header nested 100 deep", f => EditHeaderText(f, t => t.TrimEnd()[..^1] + ",\"deep\":" + new string('[', 100) + new string(']', 100) + "}"));
        yield return H("duplicate tensor name", f => EditHeaderText(f, t =>
        {
            var o = JsonNode.Parse(t)!.AsObject();
            var (n, e) = Entry(o);
            return t.TrimEnd()[..^1] + $",\"{n}\":{e.ToJsonString()}}}";
        }), tensor: true);
        yield return H("duplicate __metadata__", f => EditHeaderText(f, t => t.TrimEnd()[..^1] + ",\"__metadata__\":{\"format\":\"pt\"},\"__metadata__\":{}}"));
        yield return H("__metadata__ not an object", f => EditHeader(f, h => h["__metadata__"] = 5));
        yield return H("__metadata__ value not a string", f => EditHeader(f, h => h["__metadata__"] = new JsonObject { ["format"] = 1 }));
        yield return H("entry not an object", f => EditHeader(f, h => h[Entry(h).Name] = "x"), tensor: true);
        yield return E("dtype missing", e => e.Remove("dtype"));
        yield return E("dtype not a string", e => e["dtype"] = 7);
        yield return E("dtype unknown", e => e["dtype"] = "F12");
        yield return E("dtype wrong case", e => e["dtype"] = e["dtype"]!.GetValue<string>().ToLowerInvariant());
        yield return E("shape missing", e => e.Remove("shape"));
        yield return E("shape not an array", e => e["shape"] = 3);
        yield return E("shape negative dimension", e => e["shape"] = new JsonArray(-1, 4));
        yield return E("shape fractional dimension", e => e["shape"] = new JsonArray(1.5, 4));
        yield return E("shape string dimension", e => e["shape"] = new JsonArray("4"));
        yield return E("shape dimension 2^70", e => e["shape"] = JsonNode.Parse("[1180591620717411303424]"));
        yield return E("shape rank 33", e => e["shape"] = new JsonArray(Enumerable.Range(0, 33).Select(_ => (JsonNode?)JsonValue.Create(1)).ToArray()));
        yield return E("shape product overflows", e => e["shape"] = new JsonArray(1L << 40, 1L << 40));
        yield return E("shape product wraps to 0 in 64 bits", e => e["shape"] = new JsonArray(1L << 32, 1L << 32));
        yield return E("F4 odd element count", e => { e["dtype"] = "F4"; e["shape"] = new JsonArray(3); });
        yield return E("data_offsets missing", e => e.Remove("data_offsets"));
        yield return E("data_offsets one number", e => e["data_offsets"] = new JsonArray(0));
        yield return E("data_offsets three numbers", e => e["data_offsets"] = new JsonArray(0, 1, 2));
        yield return E("data_offsets negative", e => e["data_offsets"] = new JsonArray(-8, 0));
        yield return E("data_offsets fractional", e => e["data_offsets"] = new JsonArray(0.5, 2));
        yield return E("data_offsets u64 max", e => e["data_offsets"] = JsonNode.Parse("[0, 18446744073709551615]"));
        yield return E("data_offsets end before begin", e => { var o = e["data_offsets"]!.AsArray(); long a = o[0]!.GetValue<long>(), z = o[1]!.GetValue<long>(); e["data_offsets"] = new JsonArray(z, a); });
        yield return E("size does not match shape", e => e["shape"] = new JsonArray(e["shape"]!.AsArray().Select(x => (JsonNode?)JsonValue.Create(x!.GetValue<long>() + 1)).ToArray()));
        yield return H("data_offsets past the data buffer", f => EditHeader(f, h =>
        {
            var last = h.Where(kv => kv.Key != "__metadata__").MaxBy(kv => kv.Value!["data_offsets"]![1]!.GetValue<long>());
            var e = last.Value!.AsObject();
            long end = e["data_offsets"]![1]!.GetValue<long>();
            e["data_offsets"] = new JsonArray(end, end + 2);
            e["shape"] = new JsonArray(1);
            e["dtype"] = "BF16";
        }), tensor: true);
        yield return H("two tensors overlap", f => EditHeader(f, h =>
        {
            var es = h.Where(kv => kv.Key != "__metadata__").Select(kv => kv.Value!.AsObject()).OrderBy(e => e["data_offsets"]![0]!.GetValue<long>()).ToList();
            es[1]["data_offsets"] = es[0]["data_offsets"]!.DeepClone();
            es[1]["shape"] = es[0]["shape"]!.DeepClone();
            es[1]["dtype"] = es[0]["dtype"]!.DeepClone();
        }), tensor: true);
        yield return H("hole before a tensor", f => EditHeader(f, h => h.Remove(Entry(h, (_, e) => e["data_offsets"]![0]!.GetValue<long>() == 0 && e["data_offsets"]![1]!.GetValue<long>() > 0).Name)), tensor: true);
        yield return H("trailing bytes after the last tensor", f => { var (h, d) = Split(f); Join(f, h, d.Concat(new byte[16]).ToArray()); });
    }

    static IEnumerable<CorpusCase> IndexRules(CorpusBase b)
    {
        string dir = BaseDir(b);
        if (!File.Exists(IndexOf(dir))) yield break;
        string s0 = Path.GetFileName(Shard(dir, 0)), s1 = Path.GetFileName(Shard(dir, 1));
        CorpusCase X(string name, Action<string> apply, bool tensor = false) =>
            new($"{b}: {name}", "consistency", b, I, apply) { NamesTensor = tensor };
        void Wm(string d, Action<JsonObject> f) => EditJson(IndexOf(d), o => f(o["weight_map"]!.AsObject()));

        yield return X("index names a missing shard", d => File.Delete(Path.Combine(d, s1)));
        yield return X("index names a shard that is a directory", d => { File.Delete(Path.Combine(d, s1)); Directory.CreateDirectory(Path.Combine(d, s1)); });
        yield return X("index names a tensor the shard lacks", d => Wm(d, w => w["model.does_not_exist.weight"] = s0), tensor: true);
        yield return X("shard holds a tensor the index lacks", d => Wm(d, w => w.Remove(FirstTensorOf(Path.Combine(d, s0)))), tensor: true);
        yield return X("index maps a tensor to the wrong shard", d => Wm(d, w => w[FirstTensorOf(Path.Combine(d, s0))] = s1), tensor: true);
        yield return X("tensor stored in two shards", d =>
        {
            string name = FirstTensorOf(Path.Combine(d, s0), t => t.ByteLength > 0);
            (TensorSpec, byte[]) copy;
            using (var f = SafeTensorsFile.Open(Path.Combine(d, s0))) { var t = f.Get(name); copy = (new TensorSpec(t.Name, t.DType, t.Shape), f.GetBytes(t).ToArray()); }
            Rewrite(Path.Combine(d, s1), l => l.Append(copy).ToList());
        }, tensor: true);
        yield return X("index not JSON", d => File.WriteAllText(IndexOf(d), "{\"weight_map\": "));
        yield return X("index without weight_map", d => File.WriteAllText(IndexOf(d), "{\"metadata\": {}}"));
        yield return X("index weight_map value not a string", d => Wm(d, w => w[w.First().Key] = 3), tensor: true);
        yield return X("index shard name with a path", d => Wm(d, w => w[w.First().Key] = "../" + s0), tensor: true);
        yield return (X("index duplicate tensor", d => File.WriteAllText(IndexOf(d), File.ReadAllText(IndexOf(d)).Replace("\"weight_map\": {", "\"weight_map\": {\"x.weight\": \"" + s0 + "\", \"x.weight\": \"" + s0 + "\",")), tensor: true) with { Expected = M });
        yield return X("index invalid UTF-8", d => { var bytes = File.ReadAllBytes(IndexOf(d)); bytes[bytes.Length / 2] = 0xFE; File.WriteAllBytes(IndexOf(d), bytes); });
    }

    static IEnumerable<CorpusCase> ConfigRules()
    {
        // Config vs tensors: verify compares tensors only, so it passes (0).
        CorpusCase C(CorpusBase b, string name, Action<string> apply, int inspect = I) =>
            new($"{b}: {name}", "consistency", b, I, apply) { Verify = Ok, Inspect = inspect };
        foreach (var b in new[] { CorpusBase.Hf, CorpusBase.Native })
        {
            yield return C(b, "config: one layer more than the tensors", d => SetConfigInt(d, "num_hidden_layers", x => x + 1));
            yield return C(b, "config: one layer fewer than the tensors", d => SetConfigInt(d, "num_hidden_layers", x => x - 1));
            yield return C(b, "config: one expert more than the tensors", d => SetConfigInt(d, "n_routed_experts", x => x + 1));
            yield return C(b, "config: one expert fewer than the tensors", d => SetConfigInt(d, "n_routed_experts", x => x - 1));
            yield return C(b, "config: one MTP depth more than the tensors", d => SetConfigInt(d, "num_nextn_predict_layers", x => x + 1));
            yield return C(b, "config: no MTP depth but MTP tensors", d => SetConfigInt(d, "num_nextn_predict_layers", _ => 0));
            yield return new CorpusCase($"{b}: config.json not JSON", "malformed-config", b, M, d => File.WriteAllText(ConfigOf(d), "{\"model_type\": ")) { Verify = M };
            yield return new CorpusCase($"{b}: config.json a JSON array", "malformed-config", b, M, d => File.WriteAllText(ConfigOf(d), "[1, 2]")) { Verify = M };
        }
        // Two files of one checkpoint with different conventions.
        yield return new CorpusCase("Hf: shard 2 uses training-layout names", "consistency", CorpusBase.Hf, I, d =>
        {
            string s1 = Shard(d, 1);
            var renames = new Dictionary<string, string>();
            Rewrite(s1, l => l.Select(t =>
            {
                string n = t.Spec.Name.StartsWith("model.layers.3.", StringComparison.Ordinal) ? "mtp.layers.0." + t.Spec.Name["model.layers.3.".Length..] : t.Spec.Name;
                renames[t.Spec.Name] = n;
                return (t.Spec with { Name = n }, t.Data);
            }).ToList());
            EditJson(IndexOf(d), o =>
            {
                var w = o["weight_map"]!.AsObject();
                foreach (var (from, to) in renames.Where(r => r.Key != r.Value)) { string v = w[from]!.GetValue<string>(); w.Remove(from); w[to] = v; }
            });
        }) { Verify = D };
        yield return new CorpusCase("Hf: shard 2 stores FP8 scales as BF16, shard 1 as F32", "consistency", CorpusBase.Hf, I, d =>
        {
            Rewrite(Shard(d, 1), l => l.Select(t =>
            {
                if (!t.Spec.Name.EndsWith("weight_scale_inv", StringComparison.Ordinal) || t.Spec.DType != DType.F32) return t;
                var f = System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(t.Data);
                var o = new byte[f.Length * 2];
                for (int i = 0; i < f.Length; i++) BitConverter.TryWriteBytes(o.AsSpan(i * 2), (ushort)(BitConverter.SingleToUInt32Bits(f[i]) >> 16));
                return (t.Spec with { DType = DType.BF16 }, o);
            }).ToList());
        }) { Verify = D };
        yield return new CorpusCase("Native: shard 2 uses per-expert names, shard 1 stacked", "consistency", CorpusBase.Native, I, d =>
        {
            string s1 = Shard(d, 1);
            Rewrite(s1, l => l.Append((new TensorSpec("model.layers.2.mlp.experts.0.gate_proj.weight", DType.BF16, new long[] { 2, 2 }), new byte[8])).ToList());
            EditJson(IndexOf(d), o => o["weight_map"]!.AsObject()["model.layers.2.mlp.experts.0.gate_proj.weight"] = Path.GetFileName(s1));
        }) { Verify = D };
    }

    static IEnumerable<CorpusCase> Numeric()
    {
        // Scales are read by inspect (they are small); weights are not, so a NaN weight passes inspect.
        CorpusCase N(CorpusBase b, string name, Action<string> apply, int inspect = M, bool tensor = true) =>
            new($"{b}: {name}", "numeric", b, M, apply) { Inspect = inspect, Verify = D, NamesTensor = tensor };
        static (string File, TensorInfo T) Find(string dir, Func<TensorInfo, bool> pick)
        {
            foreach (string s in Directory.GetFiles(dir, "*.safetensors").OrderBy(x => x, StringComparer.Ordinal))
            {
                using var f = SafeTensorsFile.Open(s);
                var t = f.Tensors.FirstOrDefault(pick);
                if (t != null) return (s, t);
            }
            throw new InvalidOperationException("no such tensor in " + dir);
        }
        void Patch(string d, Func<TensorInfo, bool> pick, Action<byte[]> p) { var (f, t) = Find(d, pick); PatchTensor(f, t.Name, p); }
        static bool Fp8Scale(TensorInfo t) => t.Name.EndsWith("weight_scale_inv", StringComparison.Ordinal) && t.DType == DType.F32;

        yield return N(CorpusBase.Hf, "F32 scale NaN", d => Patch(d, Fp8Scale, b => BitConverter.TryWriteBytes(b, float.NaN)));
        yield return N(CorpusBase.Hf, "F32 scale +Inf", d => Patch(d, Fp8Scale, b => BitConverter.TryWriteBytes(b, float.PositiveInfinity)));
        yield return N(CorpusBase.Hf, "F32 scale -Inf", d => Patch(d, Fp8Scale, b => BitConverter.TryWriteBytes(b.AsSpan(b.Length - 4), float.NegativeInfinity)));
        yield return N(CorpusBase.Hf, "F32 scale overflows the weight (3e38)", d => Patch(d, Fp8Scale, b => { for (int i = 0; i < b.Length; i += 4) BitConverter.TryWriteBytes(b.AsSpan(i), 3e38f); }), inspect: Ok);
        yield return N(CorpusBase.HfV4, "E8M0 scale 0xFF (FP4 experts)", d => Patch(d, t => t.DType == DType.F8_E8M0 && t.Name.Contains(".experts."), b => b[0] = 0xFF));
        yield return N(CorpusBase.HfV4, "E8M0 scale 0xFF (FP8 weight)", d => Patch(d, t => t.DType == DType.F8_E8M0 && !t.Name.Contains(".experts."), b => b[^1] = 0xFF));
        yield return N(CorpusBase.Hf, "FP8 weight with NaN codes", d => Patch(d, t => t.DType == DType.F8_E4M3, b => { b[0] = 0x7F; b[^1] = 0xFF; }), inspect: Ok);
        yield return N(CorpusBase.Hf, "scale grid does not fit its weight", d =>
        {
            var (f, t) = Find(d, t => Fp8Scale(t) && t.Shape.Length == 2 && t.Shape[0] != t.Shape[1] && t.Shape[0] > 0 && t.Shape[1] > 0);
            EditHeader(f, h => h[t.Name]!["shape"] = new JsonArray(t.Shape[1], t.Shape[0]));
        });
        yield return N(CorpusBase.Hf, "scale grid 1-D", d =>
        {
            var (f, t) = Find(d, Fp8Scale);
            EditHeader(f, h => h[t.Name]!["shape"] = new JsonArray(t.ElementCount));
        });
        yield return N(CorpusBase.HfV4, "FP4 scale with zero columns", d =>
        {
            var (f, t) = Find(d, t => t.DType == DType.F8_E8M0 && t.Name.Contains(".experts.") && t.Shape.Length == 2);
            EditHeader(f, h => h[t.Name]!["shape"] = new JsonArray(t.ElementCount, 0));
        }) with { Verify = M };
        yield return N(CorpusBase.NativeV4, "FP4 target with an odd column count", d =>
        {
            // Stacked experts [E, 2I, H] / [E, H, I] with H odd: the HF FP4 w1/w3 [I, H] cannot be packed.
            foreach (string s in Directory.GetFiles(d, "*.safetensors"))
                Rewrite(s, l => l.Select(t =>
                {
                    if (t.Spec.Name.EndsWith("experts.gate_up_proj", StringComparison.Ordinal))
                    {
                        var sh = new[] { t.Spec.Shape[0], t.Spec.Shape[1], t.Spec.Shape[2] - 1 };
                        return (t.Spec with { Shape = sh }, new byte[Shapes.Product(sh) * 2]);
                    }
                    if (t.Spec.Name.EndsWith("experts.down_proj", StringComparison.Ordinal))
                    {
                        var sh = new[] { t.Spec.Shape[0], t.Spec.Shape[1] - 1, t.Spec.Shape[2] };
                        return (t.Spec with { Shape = sh }, new byte[Shapes.Product(sh) * 2]);
                    }
                    return t;
                }).ToList());
            // Keep the index's total_size honest (it is only a warning otherwise).
        }, inspect: Ok) with { Verify = D };
    }
}
