namespace Mtp.SafeTensors;

/// <summary>One output shard: its file name and the tensors it holds, in order.</summary>
/// <param name="FileName">e.g. model-00001-of-00003.safetensors.</param>
/// <param name="Tensors">Tensors in write order.</param>
public sealed record ShardPlan(string FileName, IReadOnlyList<TensorSpec> Tensors)
{
    /// <summary>Data bytes of this shard.</summary>
    public long Bytes => Tensors.Sum(t => t.ByteLength);
}

/// <summary>Splits tensors into shards by a maximum size, and writes the index for them.</summary>
public static class ShardPlanner
{
    /// <summary>
    /// Greedy, order-preserving split: a shard closes when the next tensor would push it past
    /// <paramref name="maxShardBytes"/> (a tensor larger than the limit gets a shard of its own).
    /// One shard is named <c>model.safetensors</c>; several follow the <c>model-0000i-of-0000n</c> convention.
    /// </summary>
    public static IReadOnlyList<ShardPlan> Plan(IReadOnlyList<TensorSpec> tensors, long maxShardBytes, string prefix = "model")
    {
        if (maxShardBytes <= 0) throw new ArgumentOutOfRangeException(nameof(maxShardBytes));
        var groups = new List<List<TensorSpec>>();
        var cur = new List<TensorSpec>();
        long size = 0;
        foreach (TensorSpec t in tensors)
        {
            long b = t.ByteLength;
            if (cur.Count > 0 && size + b > maxShardBytes)
            {
                groups.Add(cur);
                cur = new List<TensorSpec>();
                size = 0;
            }
            cur.Add(t);
            size += b;
        }
        if (cur.Count > 0 || groups.Count == 0) groups.Add(cur);
        if (groups.Count == 1) return new[] { new ShardPlan(prefix + ".safetensors", groups[0]) };
        int n = groups.Count;
        return groups.Select((g, i) => new ShardPlan($"{prefix}-{i + 1:D5}-of-{n:D5}.safetensors", g)).ToList();
    }

    /// <summary>Writes <c>model.safetensors.index.json</c> for the given shards into <paramref name="dir"/>.</summary>
    public static void WriteIndex(string dir, IReadOnlyList<ShardPlan> shards)
    {
        var map = shards.SelectMany(s => s.Tensors.Select(t => new KeyValuePair<string, string>(t.Name, s.FileName)));
        ShardIndex.Write(Path.Combine(dir, ShardIndex.FileName), shards.Sum(s => s.Bytes), map);
    }
}
