using System.Runtime.InteropServices;
using System.Text.Json.Nodes;
using static TorchSharp.torch;

namespace Mtp.Model;

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
