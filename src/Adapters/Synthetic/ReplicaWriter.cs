using System.Diagnostics;
using Mtp.SafeTensors;

namespace Mtp.Adapters.Synthetic;

/// <summary>What a replica holds on disk besides its headers.</summary>
public enum ReplicaData
{
    /// <summary>Every scale (FP8 block scales and FP4 group scales) written for real; all other data as holes.</summary>
    Scales,
    /// <summary>FP8 block scales written for real; FP4 group scales left as holes (E8M0 byte 0 = 2^-127: still finite), for checkpoints whose FP4 scales alone would fill the disk.</summary>
    BlockScales,
    /// <summary>Headers only: every data byte is a hole (plans and header checks only).</summary>
    HeadersOnly,
}

/// <summary>What <see cref="ReplicaWriter.WriteCheckpoint"/> wrote.</summary>
/// <param name="Tensors">Tensors in the shard headers.</param>
/// <param name="LogicalBytes">Tensor data bytes the headers describe (the size of the real checkpoint).</param>
/// <param name="WrittenBytes">Tensor data bytes actually written (the scales); the rest are holes.</param>
/// <param name="Shards">Shard files.</param>
/// <param name="Skipped">Names of the given weight map that the family's tensor list does not have (not written).</param>
/// <param name="Elapsed">Wall time.</param>
public sealed record ReplicaResult(int Tensors, long LogicalBytes, long WrittenBytes, int Shards, IReadOnlyList<string> Skipped, TimeSpan Elapsed);

/// <summary>
/// Writes a header-true replica of a released checkpoint: the family's tensor list (<see cref="SynthPlan"/>) laid out in
/// shards like the release (the release's weight map when given, else split by size), each shard a sparse file whose
/// headers are real and whose data are holes, except the scales, which are written for real (plausible values, so every
/// dequantization is finite). A 689 GB DeepSeek-V3 replica takes about 45 MB of disk.
/// </summary>
public static class ReplicaWriter
{
    /// <summary>
    /// The shard layout: with <paramref name="weightMap"/> (a release's <c>model.safetensors.index.json</c>), its file
    /// names and assignment (names the plan does not have are returned in <paramref name="skipped"/>); else a greedy split
    /// at <paramref name="maxShardBytes"/>. DeepSeek-V4 shards list their tensors by dtype, then name, as its release does.
    /// </summary>
    /// <exception cref="ArgumentException">The weight map lacks a tensor of the plan (the message names it and the file).</exception>
    public static IReadOnlyList<ShardPlan> Layout(SynthPlan plan, ShardIndex? weightMap, string? weightMapPath, long maxShardBytes, out List<string> skipped)
    {
        skipped = new List<string>();
        IReadOnlyList<ShardPlan> shards;
        if (weightMap is null) shards = ShardPlanner.Plan(plan.Tensors.Select(t => t.Spec).ToList(), maxShardBytes);
        else
        {
            var fileOf = new Dictionary<string, string>(StringComparer.Ordinal);
            foreach (var kv in weightMap.WeightMap) fileOf[kv.Key] = kv.Value;
            var known = new HashSet<string>(plan.Tensors.Select(t => t.Name), StringComparer.Ordinal);
            skipped.AddRange(weightMap.WeightMap.Select(kv => kv.Key).Where(n => !known.Contains(n)));
            var groups = new SortedDictionary<string, List<TensorSpec>>(StringComparer.Ordinal);
            foreach (SynthTensor t in plan.Tensors)
            {
                if (!fileOf.TryGetValue(t.Name, out string? file))
                    throw new ArgumentException($"{weightMapPath}: tensor '{t.Name}' of the config's {plan.Family} layout is not in the weight map");
                if (!groups.TryGetValue(file, out var g)) groups[file] = g = new List<TensorSpec>();
                g.Add(t.Spec);
            }
            shards = groups.Select(kv => new ShardPlan(kv.Key, kv.Value)).ToList();
        }
        if (plan.Family == Families.DeepSeekV4)
            shards = shards.Select(s => s with { Tensors = s.Tensors.OrderBy(t => t.DType.Name(), StringComparer.Ordinal).ThenBy(t => t.Name, StringComparer.Ordinal).ToList() }).ToList();
        return shards;
    }

    /// <summary>Whether <paramref name="t"/>'s bytes are written under <paramref name="data"/> (the rest are holes).</summary>
    public static bool Written(SynthTensor t, ReplicaData data) => data switch
    {
        ReplicaData.Scales => t.Fill is SynthFill.ScaleF32 or SynthFill.ScaleF32PowerOfTwo or SynthFill.ScaleBf16 or SynthFill.ScaleE8M0,
        ReplicaData.BlockScales => t.Fill is SynthFill.ScaleF32 or SynthFill.ScaleF32PowerOfTwo or SynthFill.ScaleBf16 || (t.Fill == SynthFill.ScaleE8M0 && !t.Name.Contains(".experts.", StringComparison.Ordinal)),
        _ => false,
    };

    /// <summary>
    /// Writes the replica through an <see cref="OutputTransaction"/> (renamed into place when complete): the shards,
    /// the index (several shards) and <paramref name="configJson"/> verbatim as config.json. The space check counts the
    /// bytes written, not the holes. <paramref name="progress"/> receives (bytes written, bytes to write).
    /// </summary>
    /// <exception cref="OutputException">OUT may not be replaced or the written bytes do not fit.</exception>
    public static ReplicaResult WriteCheckpoint(SynthPlan plan, IReadOnlyList<ShardPlan> shards, byte[] configJson, string outDir, ulong seed,
        ReplicaData data, IReadOnlyList<string> skipped, OutputRules? rules = null, Action<long, long>? progress = null)
    {
        rules ??= new OutputRules();
        var byName = plan.Tensors.ToDictionary(t => t.Name, StringComparer.Ordinal);
        long toWrite = shards.Sum(s => s.Tensors.Sum(t => Written(byName[t.Name], data) ? t.ByteLength : 0));
        using var txn = OutputTransaction.Begin(outDir, toWrite, rules);
        return txn.Run(dir =>
        {
            var sw = Stopwatch.StartNew();
            var buf = new byte[SynthWriter.BatchBytes];
            long written = 0;
            foreach (ShardPlan shard in shards)
            {
                // V4 releases carry no __metadata__; the others carry {"format": "pt"}
                var meta = plan.Family == Families.DeepSeekV4 ? null : new Dictionary<string, string> { ["format"] = "pt" };
                byte[] header = SafeTensorsWriter.BuildHeader(shard.Tensors, meta);
                using var fs = new FileStream(Path.Combine(dir, shard.FileName), FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 16);
                fs.Write(BitConverter.GetBytes((ulong)header.Length));
                fs.Write(header);
                long start = 8 + header.Length, off = 0;
                fs.SetLength(start + shard.Bytes); // the data as one hole
                foreach (TensorSpec spec in shard.Tensors)
                {
                    SynthTensor t = byName[spec.Name];
                    if (Written(t, data))
                    {
                        ulong ts = SynthData.TensorSeed(seed, t.Name);
                        for (long at = 0; at < t.ByteLength; at += buf.Length)
                        {
                            rules.Cancel.ThrowIfCancellationRequested();
                            int n = (int)Math.Min(buf.Length, t.ByteLength - at);
                            SynthData.Fill(t, ts, at, buf.AsSpan(0, n));
                            fs.Position = start + off + at;
                            fs.Write(buf, 0, n);
                            written += n;
                        }
                        progress?.Invoke(written, toWrite);
                    }
                    off += spec.ByteLength;
                }
            }
            if (shards.Count > 1) ShardPlanner.WriteIndex(dir, shards);
            File.WriteAllBytes(Path.Combine(dir, "config.json"), configJson);
            return new ReplicaResult(shards.Sum(s => s.Tensors.Count), shards.Sum(s => s.Bytes), written, shards.Count, skipped, sw.Elapsed);
        });
    }
}
