using System.Text.Json.Nodes;
using Microsoft.Extensions.Logging;
using Mtp.SafeTensors;

namespace Mtp.Adapters;

public static partial class Converter
{
    /// <summary>
    /// The shards that exceed <see cref="ConvertOptions.MaxShardBytes"/> because one tensor alone does (stacked experts:
    /// 15 GB for DeepSeek-V3's MTP layer): such a tensor gets a shard of its own. Each is logged as a warning and returned
    /// for conversion.json, with the way out (<c>--expert-layout per-expert</c>) where the tensor is a stack of experts.
    /// </summary>
    internal static JsonArray OversizedShards(IReadOnlyList<ShardPlan> shards, ConvertOptions o, ConvertProgress? progress)
    {
        var list = new JsonArray();
        foreach (ShardPlan s in shards)
        {
            if (s.Bytes <= o.MaxShardBytes) continue;
            TensorSpec big = s.Tensors.MaxBy(t => t.ByteLength)!;
            bool stacked = !o.PerExpertLayout && (big.Name.EndsWith(".gate_up_proj", StringComparison.Ordinal) || big.Name.EndsWith(".down_proj", StringComparison.Ordinal));
            string line = $"{s.FileName}: {s.Bytes:N0} bytes, over --max-shard-size {o.MaxShardBytes:N0}: tensor '{big.Name}' ({big.ByteLength:N0} bytes) is larger than the limit " +
                "and has a shard of its own" + (stacked ? "; --expert-layout per-expert writes one tensor per expert, which fit" : "");
            // Every one goes to conversion.json; the log names the first three and counts the rest (V3 in BF16: 118).
            if (list.Count < 3) o.Logger.LogWarning("{Line}", line);
            list.Add(new JsonObject { ["shard"] = s.FileName, ["bytes"] = s.Bytes, ["tensor"] = big.Name, ["tensor_bytes"] = big.ByteLength, ["message"] = line });
        }
        if (list.Count > 3)
            o.Logger.LogWarning("{Line}", $"{list.Count - 3} more shard(s) over --max-shard-size for the same reason (all {list.Count} listed under 'warnings' in {ReportFileName})");
        return list;
    }

    internal static JsonObject? QuantConfigOf(JsonObject? c) =>
        c?["quantization_config"] as JsonObject ?? (c?["text_config"] as JsonObject)?["quantization_config"] as JsonObject;

    internal static string? ScaleFmtText(JsonObject? q) => q?["scale_fmt"] is JsonValue v && v.TryGetValue(out string? s) ? s : null;

    /// <summary>Whether the config's quantization_config says <c>scale_fmt: ue8m0</c>: F32 block scales are then powers of two.</summary>
    internal static bool ScalesArePowersOfTwo(JsonObject? config) => string.Equals(ScaleFmtText(QuantConfigOf(config)), "ue8m0", StringComparison.OrdinalIgnoreCase);
}
