using System.Diagnostics;
using System.Text.Json;
using Mtp.SafeTensors;

namespace Mtp.Adapters.Synthetic;

/// <summary>What <see cref="SynthWriter.WriteCheckpoint"/> wrote.</summary>
/// <param name="Tensors">Tensor count.</param>
/// <param name="Bytes">Tensor data bytes.</param>
/// <param name="Shards">Shard files.</param>
/// <param name="Elapsed">Wall time.</param>
public sealed record SynthResult(int Tensors, long Bytes, int Shards, TimeSpan Elapsed);

/// <summary>
/// Streams a <see cref="SynthPlan"/> to disk: the bytes are generated in 8 MiB batches (in parallel,
/// 1 MiB per work item) into two reused buffers while the previous batch is being written, so memory
/// stays at a few tens of MB whatever the checkpoint size.
/// </summary>
public static class SynthWriter
{
    /// <summary>Bytes generated per batch.</summary>
    public const int BatchBytes = 8 << 20;

    /// <summary>
    /// Writes the checkpoint through an <see cref="OutputTransaction"/> (<c>OUT.partial-PID</c>, renamed into place when
    /// complete): an existing <paramref name="outDir"/> is replaced as <paramref name="rules"/> allow (default: only an
    /// empty one), the planned bytes must fit in the free space, and a cancellation removes the temporary.
    /// <paramref name="progress"/> receives (bytes written, total bytes) after each batch.
    /// </summary>
    /// <exception cref="OutputException">OUT may not be replaced or the checkpoint does not fit.</exception>
    /// <exception cref="OutputInterruptedException"><see cref="OutputRules.Cancel"/> was cancelled.</exception>
    public static SynthResult WriteCheckpoint(SynthPlan plan, string outDir, ulong seed, long maxShardBytes, OutputRules? rules = null, Action<long, long>? progress = null)
    {
        rules ??= new OutputRules();
        using var txn = OutputTransaction.Begin(outDir, plan.TotalBytes, rules); // the tensor bytes: headers and config.json add a few KB
        return txn.Run(tmp => WriteInto(plan, tmp, seed, maxShardBytes, progress, rules.Cancel));
    }

    /// <summary>Writes config.json, the shards and (for several shards) the index into the existing directory <paramref name="dir"/>.</summary>
    public static SynthResult WriteInto(SynthPlan plan, string dir, ulong seed, long maxShardBytes, Action<long, long>? progress = null, CancellationToken cancel = default)
    {
        var sw = Stopwatch.StartNew();
        var byName = plan.Tensors.ToDictionary(t => t.Name, StringComparer.Ordinal);
        IReadOnlyList<ShardPlan> shards = ShardPlanner.Plan(plan.Tensors.Select(t => t.Spec).ToList(), maxShardBytes);
        long total = plan.TotalBytes, done = 0;
        var buffers = new[] { new byte[BatchBytes], new byte[BatchBytes] };
        int which = 0;
        var items = new List<(SynthTensor T, ulong Seed, long Offset, int Dest, int Length)>();
        foreach (ShardPlan shard in shards)
        {
            using var w = SafeTensorsWriter.Create(Path.Combine(dir, shard.FileName), shard.Tensors, new Dictionary<string, string> { ["format"] = "pt" });
            Task pending = Task.CompletedTask;
            int ti = 0;
            long off = 0;
            while (ti < shard.Tensors.Count)
            {
                if (cancel.IsCancellationRequested)
                {
                    pending.GetAwaiter().GetResult(); // no write may still use the writer that is about to be disposed
                    cancel.ThrowIfCancellationRequested();
                }
                // lay out the next batch: consecutive tensor segments, cut at 1 MiB chunk boundaries
                items.Clear();
                int filled = 0;
                while (ti < shard.Tensors.Count)
                {
                    SynthTensor t = byName[shard.Tensors[ti].Name];
                    long len = t.ByteLength;
                    if (off == len) { ti++; off = 0; continue; }
                    long chunkEnd = Math.Min(len, (off / SynthData.ChunkBytes + 1) * SynthData.ChunkBytes);
                    long take = Math.Min(chunkEnd - off, BatchBytes - filled);
                    if (off + take < len) take -= take % 8; // a cut inside a tensor stays 8-byte aligned
                    if (take <= 0) break;
                    items.Add((t, SynthData.TensorSeed(seed, t.SameDataAs ?? t.Name), off, filled, (int)take));
                    filled += (int)take;
                    off += take;
                }
                byte[] buf = buffers[which];
                which ^= 1;
                if (items.Count == 1 || filled < (256 << 10))
                    foreach (var it in items) SynthData.Fill(it.T, it.Seed, it.Offset, buf.AsSpan(it.Dest, it.Length));
                else
                {
                    var batch = items.ToArray();
                    Parallel.For(0, batch.Length, i => SynthData.Fill(batch[i].T, batch[i].Seed, batch[i].Offset, buf.AsSpan(batch[i].Dest, batch[i].Length)));
                }
                pending.GetAwaiter().GetResult(); // the other buffer's write is done: it may be refilled next
                int n = filled;
                pending = Task.Run(() => w.Append(buf.AsSpan(0, n)));
                done += n;
                progress?.Invoke(done, total);
            }
            pending.GetAwaiter().GetResult();
            w.Complete();
        }
        if (shards.Count > 1) ShardPlanner.WriteIndex(dir, shards);
        File.WriteAllText(Path.Combine(dir, "config.json"),
            plan.Config.ToJsonString(new JsonSerializerOptions { WriteIndented = true }) + "\n");
        return new SynthResult(plan.Tensors.Count, total, shards.Count, sw.Elapsed);
    }
}
