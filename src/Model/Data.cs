using System.Runtime.InteropServices;
using System.Text.Json.Nodes;
using static TorchSharp.torch;

namespace Mtp.Model;

/// <summary>A resumable source of packed training batches.</summary>
public abstract class TokenSource
{
    /// <summary>Next [batch, seqLen] packed batch (ids, next-token labels, cu_seqlens); advances the position.</summary>
    public abstract PackedBatch Next(int batch, int seqLen);

    /// <summary>Everything needed to continue exactly where this source is now.</summary>
    public abstract JsonObject SaveState();

    /// <summary>Recreates a source from <see cref="SaveState"/>.</summary>
    public static TokenSource FromState(JsonObject state) => state["kind"]?.GetValue<string>() switch
    {
        "synthetic" => SyntheticTokenSource.Restore(state),
        "file" => FileTokenSource.Restore(state),
        var k => throw new InvalidDataException($"unknown data source kind '{k}'"),
    };

    /// <summary>Builds a batch from rows of token segments (each segment one packed sequence).</summary>
    protected static PackedBatch Build(List<List<long[]>> rows, int seqLen)
    {
        var flat = new long[rows.Count * seqLen];
        var cu = new List<long> { 0 };
        long p = 0;
        foreach (var row in rows)
            foreach (var seg in row)
            {
                seg.CopyTo(flat, p);
                p += seg.Length;
                cu.Add(p);
            }
        var ids = tensor(flat).view(rows.Count, seqLen);
        var cuArr = cu.ToArray();
        return new PackedBatch(ids, Packing.NextTokenLabels(ids, cuArr), cuArr);
    }
}

/// <summary>SplitMix64: a tiny PRNG whose whole state is one ulong (exactly resumable).</summary>
public sealed class SplitMix64(ulong state)
{
    /// <summary>Current state.</summary>
    public ulong State { get; private set; } = state;

    /// <summary>Next 64 random bits.</summary>
    public ulong NextU64()
    {
        ulong z = State += 0x9E3779B97F4A7C15UL;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }

    /// <summary>Uniform integer in [0, n).</summary>
    public int Next(int n) => (int)(NextU64() % (ulong)n);

    /// <summary>Uniform double in [0, 1).</summary>
    public double NextDouble() => (NextU64() >> 11) * (1.0 / (1UL << 53));
}

/// <summary>
/// Learnable synthetic stream: documents of random length (8..seqLen tokens) packed into rows; inside a
/// document x[t+1] = (5 x[t] + 3) mod V with probability 0.9, else a random token. Both the next token
/// and the tokens further ahead (MTP targets) are predictable, so main and MTP losses fall.
/// </summary>
public sealed class SyntheticTokenSource : TokenSource
{
    readonly int _vocab;
    readonly SplitMix64 _rng;

    /// <summary>Creates the stream for a vocabulary and seed.</summary>
    public SyntheticTokenSource(int vocab, ulong seed)
    {
        _vocab = vocab;
        _rng = new SplitMix64(seed);
    }

    /// <inheritdoc />
    public override PackedBatch Next(int batch, int seqLen)
    {
        var rows = new List<List<long[]>>();
        for (int r = 0; r < batch; r++)
        {
            var row = new List<long[]>();
            int left = seqLen;
            while (left > 0)
            {
                int len = Math.Min(left, 8 + _rng.Next(Math.Max(1, seqLen - 7)));
                var doc = new long[len];
                long x = _rng.Next(_vocab);
                for (int t = 0; t < len; t++)
                {
                    doc[t] = x;
                    x = _rng.NextDouble() < 0.9 ? (5 * x + 3) % _vocab : _rng.Next(_vocab);
                }
                row.Add(doc);
                left -= len;
            }
            rows.Add(row);
        }
        return Build(rows, seqLen);
    }

    /// <inheritdoc />
    public override JsonObject SaveState() => new() { ["kind"] = "synthetic", ["vocab"] = _vocab, ["rng"] = _rng.State.ToString() };

    /// <summary>Restores from <see cref="SaveState"/>.</summary>
    public static SyntheticTokenSource Restore(JsonObject s) =>
        new(s["vocab"]!.GetValue<int>(), ulong.Parse(s["rng"]!.GetValue<string>()));
}

/// <summary>
/// Token ids from a file: flat little-endian uint16 (<c>.bin</c>, <c>.u16</c>) or int32 (<c>.i32</c>), one continuous
/// document; or JSONL with one JSON list of ids per line (one document per line). Rows of seq-len are cut from
/// the stream, a document boundary starting a new packed sequence; the stream wraps around at its end.
/// </summary>
public sealed class FileTokenSource : TokenSource
{
    readonly string _path;
    readonly int[] _tokens;
    readonly long[] _docEnds; // exclusive ends, ascending, last = total
    long _cursor;

    /// <summary>Reads <paramref name="path"/>; ids must be below <paramref name="vocab"/>.</summary>
    public FileTokenSource(string path, int vocab, long cursor = 0)
    {
        _path = Path.GetFullPath(path);
        var tokens = new List<int>();
        var ends = new List<long>();
        string ext = Path.GetExtension(path).ToLowerInvariant();
        if (ext is ".bin" or ".u16")
        {
            var b = File.ReadAllBytes(path);
            if (b.Length % 2 != 0) throw new InvalidDataException($"{path}: odd byte count for uint16 tokens");
            foreach (ushort u in MemoryMarshal.Cast<byte, ushort>(b)) tokens.Add(u);
            ends.Add(tokens.Count);
        }
        else if (ext == ".i32")
        {
            var b = File.ReadAllBytes(path);
            if (b.Length % 4 != 0) throw new InvalidDataException($"{path}: byte count not a multiple of 4 for int32 tokens");
            tokens.AddRange(MemoryMarshal.Cast<byte, int>(b).ToArray());
            ends.Add(tokens.Count);
        }
        else if (ext is ".jsonl" or ".json")
        {
            int lineNo = 0;
            foreach (var line in File.ReadLines(path))
            {
                lineNo++;
                if (string.IsNullOrWhiteSpace(line)) continue;
                if (ParseIds(line) is not List<int> ids) throw new InvalidDataException($"{path}: line {lineNo}: expected a JSON list of integer token ids");
                if (ids.Count == 0) continue;
                tokens.AddRange(ids);
                ends.Add(tokens.Count);
            }
        }
        else throw new InvalidDataException($"{path}: unknown token file type '{ext}' (.bin/.u16 uint16, .i32 int32, .jsonl lists)");
        if (tokens.Count < 2) throw new InvalidDataException($"{path}: fewer than 2 tokens");
        for (int i = 0; i < tokens.Count; i++)
            if (tokens[i] < 0 || tokens[i] >= vocab) throw new InvalidDataException($"{path}: token #{i} = {tokens[i]} is outside the vocabulary [0, {vocab})");
        _tokens = tokens.ToArray();
        _docEnds = ends.ToArray();
        _cursor = cursor % _tokens.Length;
        Vocab = vocab;
        Sha256 = HashFile(path);
    }

    /// <summary>Hex SHA-256 of the file's bytes (saved with the position: a resume must read the same tokens).</summary>
    public string Sha256 { get; }

    /// <summary>Hex SHA-256 of a file's bytes.</summary>
    public static string HashFile(string path)
    {
        using var f = File.OpenRead(path);
        return Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(f));
    }

    /// <summary>The vocabulary bound checked on load.</summary>
    public int Vocab { get; }

    // One .jsonl line as token ids; null for anything else (bad JSON, not a list, a non-integer) so the caller names the line.
    static List<int>? ParseIds(string line)
    {
        try
        {
            if (JsonNode.Parse(line) is not JsonArray arr) return null;
            var ids = new List<int>(arr.Count);
            foreach (var n in arr)
            {
                if (n is not JsonValue v || !v.TryGetValue(out int id)) return null;
                ids.Add(id);
            }
            return ids;
        }
        catch (System.Text.Json.JsonException) { return null; }
    }

    /// <summary>Position of the next token to read.</summary>
    public long Cursor => _cursor;

    /// <inheritdoc />
    public override PackedBatch Next(int batch, int seqLen)
    {
        var rows = new List<List<long[]>>();
        for (int r = 0; r < batch; r++)
        {
            var row = new List<long[]>();
            int left = seqLen;
            while (left > 0)
            {
                int d = Array.BinarySearch(_docEnds, _cursor);
                long docEnd = d >= 0 ? _docEnds[d + 1 < _docEnds.Length ? d + 1 : 0] : _docEnds[~d];
                if (d >= 0 && d + 1 >= _docEnds.Length) { _cursor = 0; docEnd = _docEnds[0]; }
                int len = (int)Math.Min(left, docEnd - _cursor);
                var seg = new long[len];
                for (int i = 0; i < len; i++) seg[i] = _tokens[_cursor + i];
                row.Add(seg);
                left -= len;
                _cursor += len;
                if (_cursor >= _tokens.Length) _cursor = 0;
            }
            rows.Add(row);
        }
        return Build(rows, seqLen);
    }

    /// <inheritdoc />
    public override JsonObject SaveState() => new() { ["kind"] = "file", ["path"] = _path, ["vocab"] = Vocab, ["cursor"] = _cursor, ["sha256"] = Sha256 };

    /// <summary>Restores from <see cref="SaveState"/> (re-reads the file; refuses a file whose bytes changed since).</summary>
    public static FileTokenSource Restore(JsonObject s)
    {
        var source = new FileTokenSource(s["path"]!.GetValue<string>(), s["vocab"]!.GetValue<int>(), s["cursor"]!.GetValue<long>());
        if (s["sha256"]?.GetValue<string>() is string saved && saved != source.Sha256)
            throw new InvalidDataException($"{source._path}: changed since the training state was saved (sha256 {source.Sha256}, saved {saved}): its position means nothing now");
        return source;
    }
}
