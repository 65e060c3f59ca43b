using System.Buffers;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json.Nodes;
using Mtp.SafeTensors;

namespace Mtp.Adapters;

/// <summary>
/// Whether an MTP layer's copy of the embedding or head holds the same bytes as the main one (DeepSeek-V3: 4 x 1.85 GB).
/// The comparison streams both tensors with positioned reads in <see cref="Chunk"/> pieces, never through the map, and drops
/// each chunk from the page cache once compared, so it costs neither resident memory nor cache; ranges that are holes in
/// both files are skipped. Its result is recorded
/// (<see cref="Record"/>) in the part manifests, keyed by the two tensors' files, sizes, modification times and offsets:
/// a later <c>--part</c> of the same conversion takes it from there instead of reading 7.4 GB again.
/// </summary>
internal sealed class TiedCopies
{
    /// <summary>Bytes compared at once (two buffers of this size).</summary>
    public const int Chunk = 8 << 20;
    /// <summary>The manifest key that holds the recorded comparisons.</summary>
    public const string ManifestKey = "tied_checks";

    readonly Dictionary<string, bool> _known = new(StringComparer.Ordinal);
    readonly bool _dropBehind;
    long _bytesRead;

    /// <summary>Source bytes read by the comparisons (both tensors).</summary>
    public long BytesRead => _bytesRead;
    /// <summary>Comparisons made or taken from a manifest, in order (the record that travels with the parts).</summary>
    public JsonArray Record { get; } = new();
    /// <summary>How many results were taken from an earlier part's manifest.</summary>
    public int Reused { get; private set; }

    /// <param name="partsDir">The output's parts folder, whose part manifests may hold earlier results (null: none).</param>
    /// <param name="dropBehind">Drop the compared ranges from the page cache.</param>
    public TiedCopies(string? partsDir, bool dropBehind)
    {
        _dropBehind = dropBehind;
        if (partsDir == null || !Directory.Exists(partsDir)) return;
        foreach (string f in Directory.GetFiles(partsDir, "part-*-of-*.json"))
        {
            try
            {
                if (JsonNode.Parse(File.ReadAllText(f))?[ManifestKey] is not JsonArray a) continue;
                foreach (var x in a)
                    if (x?["key"]?.GetValue<string>() is string k && x["same"] is JsonValue v && v.TryGetValue(out bool same)) _known[k] = same;
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException or System.Text.Json.JsonException or InvalidOperationException) { }
        }
    }

    /// <summary>Whether <paramref name="copy"/> and <paramref name="main"/> have the same dtype, shape and bytes.</summary>
    public bool Same(TensorLocation copy, TensorLocation main)
    {
        if (copy.Info.DType != main.Info.DType || !copy.Info.Shape.SequenceEqual(main.Info.Shape)) return false;
        string key = KeyOf(copy, main);
        if (!_known.TryGetValue(key, out bool same))
        {
            same = Compare(copy, main);
            _known[key] = same;
        }
        else Reused++;
        Record.Add(new JsonObject { ["copy"] = copy.Name, ["main"] = main.Name, ["key"] = key, ["same"] = same });
        return same;
    }

    static string KeyOf(TensorLocation a, TensorLocation b)
    {
        static string Part(TensorLocation t)
        {
            var fi = new FileInfo(t.File.Path);
            return $"{t.Name}@{Path.GetFileName(t.File.Path)}:{fi.Length}:{fi.LastWriteTimeUtc.Ticks}:{t.File.AbsoluteOffset(t.Info)}:{t.Info.ByteLength}";
        }
        return Convert.ToHexString(SHA256.HashData(Encoding.UTF8.GetBytes(Part(a) + "|" + Part(b))))[..32].ToLowerInvariant();
    }

    // The verifier's chunked reader and comparison: positioned reads, holes in both files skipped, drop-behind.
    bool Compare(TensorLocation a, TensorLocation b)
    {
        using var reader = new TensorReader(_dropBehind);
        byte[] ba = ArrayPool<byte>.Shared.Rent(Chunk), bb = ArrayPool<byte>.Shared.Rent(Chunk);
        try { return ChunkCompare.FirstDifference(reader, a, reader, b, ba, bb, CancellationToken.None) < 0; }
        catch (SafeTensorsException e) when (e.File is string f)
        {
            string name = e.Tensor ?? a.Name;
            throw new AdapterException(AdapterErrorKind.Malformed, $"{f}: tensor '{name}': file ends inside the tensor") { File = f, Tensor = name };
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new AdapterException(AdapterErrorKind.Io, $"{a.File.Path}: tensor '{a.Name}': {e.Message}", e) { File = a.File.Path, Tensor = a.Name };
        }
        finally
        {
            _bytesRead += reader.BytesRead;
            ArrayPool<byte>.Shared.Return(ba);
            ArrayPool<byte>.Shared.Return(bb);
        }
    }
}
