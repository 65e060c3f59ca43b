using System.Text.Json;
using System.Text.Json.Nodes;

namespace Mtp.SafeTensors;

/// <summary>The <c>model.safetensors.index.json</c> of a sharded checkpoint.</summary>
/// <param name="TotalSize">metadata.total_size (sum of tensor data bytes), if present.</param>
/// <param name="WeightMap">Tensor name to shard file name, in file order.</param>
/// <param name="Metadata">Other metadata entries, kept as JSON.</param>
public sealed record ShardIndex(long? TotalSize, IReadOnlyList<KeyValuePair<string, string>> WeightMap, JsonObject Metadata)
{
    /// <summary>The conventional index file name.</summary>
    public const string FileName = "model.safetensors.index.json";

    /// <summary>Cap on the size of an index (or config.json) read into memory: real ones are a few MB.</summary>
    public const long MaxJsonFileBytes = 256L << 20;

    /// <summary>Reads a small JSON side file (index, config.json) after checking its size against <see cref="MaxJsonFileBytes"/>.</summary>
    public static byte[] ReadCapped(string path, SafeTensorsError kind)
    {
        try
        {
            using var fs = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read);
            if (fs.Length > MaxJsonFileBytes)
                throw new SafeTensorsException(kind, path, null, $"{fs.Length} bytes exceeds the cap of {MaxJsonFileBytes} bytes for a JSON side file");
            var bytes = new byte[fs.Length];
            fs.ReadExactly(bytes);
            return bytes;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new SafeTensorsException(SafeTensorsError.Io, path, null, e.Message, e);
        }
    }

    /// <summary>Reads and checks an index file (JSON shape, duplicate names).</summary>
    public static ShardIndex Read(string path)
    {
        byte[] bytes = ReadCapped(path, SafeTensorsError.BadIndex);
        if (!System.Text.Unicode.Utf8.IsValid(bytes))
            throw new SafeTensorsException(SafeTensorsError.BadIndex, path, null, "index is not valid UTF-8");
        JsonDocument doc;
        try { doc = JsonDocument.Parse(bytes); }
        catch (JsonException e)
        {
            throw new SafeTensorsException(SafeTensorsError.BadIndex, path, null, "index is not valid JSON: " + e.Message.Replace('\n', ' '));
        }
        using (doc)
        {
            JsonElement root = doc.RootElement;
            if (root.ValueKind != JsonValueKind.Object || !root.TryGetProperty("weight_map", out JsonElement wm) || wm.ValueKind != JsonValueKind.Object)
                throw new SafeTensorsException(SafeTensorsError.BadIndex, path, null, "index has no 'weight_map' object");
            var map = new List<KeyValuePair<string, string>>();
            var seen = new HashSet<string>(StringComparer.Ordinal);
            foreach (JsonProperty p in wm.EnumerateObject())
            {
                if (p.Value.ValueKind != JsonValueKind.String)
                    throw new SafeTensorsException(SafeTensorsError.BadIndex, path, p.Name, "weight_map value is not a file name");
                if (!seen.Add(p.Name))
                    throw new SafeTensorsException(SafeTensorsError.DuplicateName, path, p.Name, "tensor appears twice in weight_map");
                string shard = p.Value.GetString()!;
                if (shard.Length == 0 || shard.Contains('/') || shard.Contains('\\') || shard == "." || shard == "..")
                    throw new SafeTensorsException(SafeTensorsError.BadIndex, path, p.Name, $"shard name '{shard}' is not a plain file name");
                map.Add(new(p.Name, shard));
            }
            long? total = null;
            var meta = new JsonObject();
            if (root.TryGetProperty("metadata", out JsonElement md) && md.ValueKind == JsonValueKind.Object)
            {
                foreach (JsonProperty p in md.EnumerateObject())
                {
                    if (p.Name == "total_size" && p.Value.ValueKind == JsonValueKind.Number && p.Value.TryGetInt64(out long t)) total = t;
                    else meta[p.Name] = JsonNode.Parse(p.Value.GetRawText());
                }
            }
            return new ShardIndex(total, map, meta);
        }
    }

    /// <summary>Writes an index (weight_map sorted by name, as Hugging Face does) atomically.</summary>
    public static void Write(string path, long totalSize, IEnumerable<KeyValuePair<string, string>> weightMap, JsonObject? extraMetadata = null)
    {
        var meta = new JsonObject { ["total_size"] = totalSize };
        if (extraMetadata != null)
            foreach (var kv in extraMetadata) meta[kv.Key] = kv.Value?.DeepClone();
        var wm = new JsonObject();
        foreach (var kv in weightMap.OrderBy(k => k.Key, StringComparer.Ordinal)) wm[kv.Key] = kv.Value;
        var root = new JsonObject { ["metadata"] = meta, ["weight_map"] = wm };
        OutputTransaction.WriteAllText(path, root.ToJsonString(new JsonSerializerOptions { WriteIndented = true }) + "\n");
    }
}
