using System.Diagnostics;
using System.Runtime.InteropServices;
using System.Text.Json;
using System.Text.Json.Nodes;
using Mtp.Quant;
using Mtp.SafeTensors;

namespace Mtp.Adapters;

public static partial class Converter
{
    static ConversionResult Execute(string direction, string inDir, string outDir, string family, ConvertOptions options, ConvertProgress? progress,
        Checkpoint src, List<PlannedTensor> outputs, IReadOnlyList<ShardPlan> shards, JsonObject config, List<(string, string)> dropped, List<string> carried,
        Dictionary<string, IReadOnlyDictionary<string, string>>? metadata, Stopwatch sw, JsonObject extra, string? refIndexPath, List<QuantPiece>? quantPieces = null)
    {
        var planTime = sw.Elapsed;
        var byName = outputs.ToDictionary(o => o.Name, StringComparer.Ordinal);
        long total = shards.Sum(s => s.Bytes);
        int threads = options.Threads > 0 ? options.Threads : Environment.ProcessorCount;
        progress?.Log?.Invoke($"{direction} {family}: {outputs.Count} tensors, {total:N0} bytes in {shards.Count} shard(s); {dropped.Count} dropped, {carried.Count} carried unknown");
        progress?.Started?.Invoke(total);

        string full = Path.GetFullPath(outDir).TrimEnd('/');
        if (options.Part is { } part)
            return ExecutePart(part, direction, inDir, outDir, full, family, options, progress, src, outputs, shards, config, dropped, carried, metadata, sw, extra,
                refIndexPath, quantPieces, planTime, byName, threads);
        long written = 0;
        // Planned: the shard files' exact sizes (the JSON files are small enough to leave out).
        long planned = shards.Sum(s => 8L + SafeTensorsWriter.BuildHeader(s.Tensors, ShardMetadata(metadata, s.FileName)).Length + s.Bytes);
        using OutputTransaction txn = BeginOutput(inDir, outDir, options, planned);
        try
        {
            txn.Run(tmp =>
            {
                written = WriteShards(shards, tmp, byName, metadata, options, threads, progress);
                if (shards.Count > 1 || refIndexPath != null && File.Exists(refIndexPath))
                {
                    JsonObject? extraMeta = refIndexPath != null && File.Exists(refIndexPath) ? ShardIndex.Read(refIndexPath).Metadata : null;
                    var map = shards.SelectMany(s => s.Tensors.Select(t => new KeyValuePair<string, string>(t.Name, s.FileName)));
                    ShardIndex.Write(Path.Combine(tmp, ShardIndex.FileName), total, map, extraMeta);
                }
                AtomicFile.WriteAllText(Path.Combine(tmp, "config.json"), config.ToJsonString(Indented) + "\n");
                AuxiliaryFiles.Copy(src.Directory, tmp, full);
                if (options.Reference != null) AuxiliaryFiles.Copy(options.Reference, tmp, full);
                sw.Stop();
                var report = BuildReport(direction, inDir, outDir, family, options, src, outputs, shards, dropped, carried, planTime, sw.Elapsed, written, extra, quantPieces);
                AtomicFile.WriteAllText(Path.Combine(tmp, ReportFileName), report.ToJsonString(Indented) + "\n");
                return written;
            });
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new AdapterException(AdapterErrorKind.Io, $"{outDir}: {e.Message}", e);
        }
        var requant = quantPieces?.Where(q => !q.Unchanged && q.ChangedBlocks > 0).Select(q => (q.WeightName, q.ChangedBlocks)).ToList() ?? new();
        return new ConversionResult(full, family, outputs.Count, dropped, carried, written, shards.Select(s => s.FileName).ToList(), requant, sw.Elapsed);
    }

    // ------------------------------------------------------------------ the write pipeline

    const int CopyChunk = 32 << 20;
    const long PrefetchBytes = 512L << 20;
    static readonly int ReadAheadThreads = int.TryParse(Environment.GetEnvironmentVariable("MTP_READAHEAD_THREADS"), out int rt) && rt > 0 ? rt : 2;

    sealed class Slot
    {
        public required PlannedTensor T;
        public required Piece P;
        public nint Buffer;
        public long Capacity;
        public bool Done;
        public int WaitFor = -1;
    }

    /// <summary>
    /// Writes <paramref name="shards"/> into <paramref name="dir"/> as a pipeline: worker threads compute the row-block pieces
    /// ahead of the writer (in order, at most half of MaxMemoryBytes and 2 x threads + 2 pieces in flight), while the calling
    /// thread streams them and the plain copies (straight from the map) into each shard. Source pages are prefetched before
    /// use and dropped from the mapping after, so resident memory does not grow with the checkpoint.
    /// </summary>
    static unsafe long WriteShards(IReadOnlyList<ShardPlan> shards, string dir, Dictionary<string, PlannedTensor> byName,
        Dictionary<string, IReadOnlyDictionary<string, string>>? metadata, ConvertOptions options, int threads, ConvertProgress? progress)
    {
        CancellationToken cancel = options.Cancel;
        // Schedule: per shard, the pieces in order; computed pieces split into row blocks.
        var perShard = new List<List<(Slot S, bool Computed)>>();
        var slots = new List<Slot>();
        var quantAt = new Dictionary<QuantPiece, int>();
        foreach (ShardPlan shard in shards)
        {
            var list = new List<(Slot, bool)>();
            foreach (TensorSpec t in shard.Tensors)
            {
                PlannedTensor pt = byName[t.Name];
                foreach (Piece p in pt.Pieces)
                {
                    if (p.Direct != null) { list.Add((new Slot { T = pt, P = p }, false)); continue; }
                    foreach (Piece sub in p.Split(Math.Max(1, options.BlockBytes)))
                    {
                        var slot = new Slot { T = pt, P = sub };
                        if (sub is QuantPiece q) { q.KeepScale = false; quantAt[q] = slots.Count; }
                        else if (sub is ScaleOfPiece so && quantAt.TryGetValue(so.Weight, out int wi)) { so.Weight.KeepScale = true; slot.WaitFor = wi; }
                        else if (sub is ScaleOfPiece orphan) orphan.Recompute = true;
                        slots.Add(slot);
                        list.Add((slot, true));
                    }
                }
            }
            perShard.Add(list);
        }

        // Read-ahead: a cursor over the whole schedule (copies and computed pieces) keeps about PrefetchBytes of source
        // ahead of the pieces being produced in the kernel's read-ahead (page cache only: no resident memory of ours).
        var flat = perShard.SelectMany(x => x).Select(x => x.S).ToList();
        var flatIndex = new Dictionary<Slot, int>(ReferenceEqualityComparer.Instance);
        for (int f = 0; f < flat.Count; f++) flatIndex[flat[f]] = f;
        var prefix = new long[flat.Count + 1];
        for (int f = 0; f < flat.Count; f++) prefix[f + 1] = prefix[f] + flat[f].P.Inputs.Sum(x => x.Length);
        int position = 0;
        void PrefetchFrom(Slot at)
        {
            int f = flatIndex[at];
            int cur;
            while ((cur = Volatile.Read(ref position)) < f && Interlocked.CompareExchange(ref position, f, cur) != cur) { }
        }

        long budget = Math.Max(1, options.MaxMemoryBytes / 2);
        int maxItems = 2 * threads + 2;
        var gate = new object();
        int next = 0, inFlight = 0;
        long inFlightBytes = 0;
        bool stop = false;
        Exception? failure = null;
        var k = new KernelOptions { MaxThreads = 1 };
        var pool = new BufferPool(Math.Min(budget, 256L << 20));
        // Read-ahead and drop-behind of the source files (a 1.6 TB stream must not push everything else out of memory, and
        // reusing just-freed pages is cheaper than taking new ones).
        var source = new SourceStream(options.DropBehind);

        void Worker()
        {
            while (true)
            {
                int idx;
                Slot slot;
                lock (gate)
                {
                    while (true)
                    {
                        if (stop || failure != null || next >= slots.Count || cancel.IsCancellationRequested) return;
                        long b = slots[next].P.Bytes;
                        if (inFlight == 0 || (inFlight < maxItems && inFlightBytes + b <= budget)) break;
                        Monitor.Wait(gate);
                    }
                    idx = next++;
                    slot = slots[idx];
                    inFlight++;
                    inFlightBytes += slot.P.Bytes;
                    if (slot.WaitFor >= 0)
                        while (!slots[slot.WaitFor].Done && failure == null && !stop) Monitor.Wait(gate);
                    if (failure != null || stop) return;
                }
                PrefetchFrom(slot);
                nint buf = 0;
                long cap = 0;
                try
                {
                    (buf, cap) = pool.Rent(slot.P.Bytes);
                    try { slot.P.Produce(new Span<byte>((void*)buf, checked((int)slot.P.Bytes)), k); }
                    catch (Exception e) when (e is ArgumentException or InvalidDataException or InvalidOperationException)
                    {
                        throw new AdapterException(AdapterErrorKind.Malformed, $"tensor '{slot.T.Name}' (from {string.Join(", ", slot.T.Sources.Take(2))}): {e.Message.Replace('\n', ' ')}", e);
                    }
                    foreach (Src s in slot.P.Consumed) source.Release(s, 0, s.Length);
                    lock (gate) { slot.Buffer = buf; slot.Capacity = cap; slot.Done = true; Monitor.PulseAll(gate); }
                }
                catch (Exception e)
                {
                    pool.Return(buf, cap);
                    lock (gate) { failure ??= e; Monitor.PulseAll(gate); }
                    return;
                }
            }
        }

        var workers = Enumerable.Range(0, slots.Count == 0 ? 0 : threads).Select(_ => new Thread(Worker) { IsBackground = true, Name = "mtp-convert" }).ToList();
        var inputs = flat.Select(x => x.P.Inputs).ToList();
        // Read-ahead threads keep PrefetchBytes of source past the furthest claimed piece in the page cache, so neither the
        // workers nor the writer wait on the disk. Two keep a second request in flight (measured at 4 GB: as fast as one, with
        // less CPU); MTP_READAHEAD_THREADS sets another count.
        int planned = 0;
        var planLock = new object();
        var prefetchers = Enumerable.Range(0, flat.Count == 0 ? 0 : ReadAheadThreads).Select(_ => new Thread(() =>
        {
            var runs = new List<(Src, long, long)>();
            while (!Volatile.Read(ref stop) && !cancel.IsCancellationRequested)
            {
                bool have = false;
                int from = 0, to = 0;
                lock (planLock)
                {
                    int cur = Volatile.Read(ref position);
                    if (planned < cur) planned = cur;
                    if (planned >= flat.Count) return;
                    if (prefix[planned] - prefix[cur] < PrefetchBytes) { from = planned; planned = to = SourceStream.PlanBatch(inputs, planned, runs); have = true; }
                }
                if (!have) { Thread.Sleep(2); continue; }
                source.Load(runs, () => Volatile.Read(ref stop) || cancel.IsCancellationRequested);
                // Pieces the workers finished while this batch was loading were dropped before the load put them back.
                for (int f = from; f < to; f++)
                    if (Volatile.Read(ref flat[f].Done)) foreach (Src s in flat[f].P.Consumed) source.Evict(s);
            }
        }) { IsBackground = true, Name = "mtp-readahead" }).ToList();
        // A cancellation wakes the writer (and the workers) waiting on the gate; they then stop as on a failure.
        using var wake = cancel.Register(() => { lock (gate) Monitor.PulseAll(gate); });
        foreach (var w in workers) w.Start();
        foreach (var p in prefetchers) p.Start();
        long written = 0;
        var open = new List<SafeTensorsWriter>();
        var completing = new List<Task>();
        try
        {
            for (int si = 0; si < shards.Count; si++)
            {
                ShardPlan shard = shards[si];
                cancel.ThrowIfCancellationRequested();
                IReadOnlyDictionary<string, string> md = metadata != null && metadata.TryGetValue(shard.FileName, out var m) ? m
                    : new Dictionary<string, string> { ["format"] = "pt" };
                var writer = SafeTensorsWriter.Create(Path.Combine(dir, shard.FileName), shard.Tensors, md, options.DropBehind ? WriteMode.Direct : WriteMode.Cached);
                open.Add(writer);
                foreach (var (slot, computed) in perShard[si])
                {
                    if (!computed)
                    {
                        Src d = slot.P.Direct!.Value;
                        var data = d.File.GetData(d.Info);
                        PrefetchFrom(slot);
                        for (long off = 0; off < d.Length; off += CopyChunk)
                        {
                            cancel.ThrowIfCancellationRequested();
                            int n = (int)Math.Min(CopyChunk, d.Length - off);
                            writer.Append(data.Slice(d.Offset + off, n));
                            source.Release(d, off, n);
                            written += n;
                            progress?.Advanced?.Invoke(n, slot.T.Name);
                        }
                        continue;
                    }
                    nint buf;
                    lock (gate)
                    {
                        while (!slot.Done && failure == null && !cancel.IsCancellationRequested) Monitor.Wait(gate);
                        if (failure != null) System.Runtime.ExceptionServices.ExceptionDispatchInfo.Capture(failure).Throw();
                        cancel.ThrowIfCancellationRequested();
                        buf = slot.Buffer;
                    }
                    long bytes = slot.P.Bytes;
                    try { writer.Append(new ReadOnlySpan<byte>((void*)buf, checked((int)bytes))); }
                    finally
                    {
                        pool.Return(buf, slot.Capacity);
                        lock (gate) { slot.Buffer = 0; inFlight--; inFlightBytes -= bytes; Monitor.PulseAll(gate); }
                    }
                    written += bytes;
                    progress?.Advanced?.Invoke(bytes, slot.T.Name);
                }
                // fsync + rename in the background: the next shard is produced while this one reaches the disk.
                string msg = $"wrote {shard.FileName} ({shard.Tensors.Count} tensors, {shard.Bytes:N0} bytes)";
                completing.Add(Task.Run(() => { try { writer.Complete(); } finally { writer.Dispose(); } })); // a failed fsync still closes the file
                open.Remove(writer);
                progress?.Log?.Invoke(msg);
            }
            try { Task.WaitAll(completing.ToArray()); }
            catch (AggregateException ae) { System.Runtime.ExceptionServices.ExceptionDispatchInfo.Capture(ae.InnerExceptions[0]).Throw(); }
        }
        finally
        {
            foreach (var w in open) w.Dispose();
            try { Task.WaitAll(completing.ToArray()); } catch (AggregateException) { }
            lock (gate) { stop = true; Monitor.PulseAll(gate); }
            foreach (var w in workers) w.Join();
            foreach (var p in prefetchers) p.Join();
            source.Dispose();
            foreach (var s in slots) if (s.Buffer != 0) { pool.Return(s.Buffer, s.Capacity); s.Buffer = 0; }
            pool.Dispose();
        }
        return written;
    }

    const int MadvDontNeed = 4;

    [DllImport("libc", EntryPoint = "madvise", SetLastError = true)]
    static extern int Madvise(nint addr, nuint length, int advice);

    /// <summary>
    /// Drops the whole pages of [off, off + len) of a mapped source range from this process's mapping (MADV_DONTNEED: they
    /// are clean and file-backed, so nothing is lost). Best effort, Linux only.
    /// </summary>
    internal static unsafe void Unmap(Src s, long off, long len)
    {
        if (len <= 0 || !OperatingSystem.IsLinux()) return;
        long page = Environment.SystemPageSize;
        long a = (long)s.File.GetData(s.Info).Pointer + s.Offset + off, e = a + len;
        a = (a + page - 1) / page * page;
        e = e / page * page;
        if (e <= a) return;
        try { Madvise((nint)a, (nuint)(e - a), MadvDontNeed); } catch (DllNotFoundException) { } catch (EntryPointNotFoundException) { }
    }


    /// <summary>Carries tokenizer files, README, code and sub-folders (see <see cref="AuxiliaryFiles.Copy"/>).</summary>
    static void CopyAuxiliary(string fromDir, string toDir) => AuxiliaryFiles.Copy(fromDir, toDir);

    static JsonArray Arr(IEnumerable<string> s) => new(s.Select(x => (JsonNode)JsonValue.Create(x)!).ToArray());
    static JsonArray Arr(IEnumerable<long> s) => new(s.Select(x => (JsonNode)JsonValue.Create(x)).ToArray());

    static JsonObject BuildReport(string direction, string inDir, string outDir, string family, ConvertOptions o, Checkpoint src, List<PlannedTensor> outputs,
        IReadOnlyList<ShardPlan> shards, List<(string, string)> dropped, List<string> carried, TimeSpan plan, TimeSpan totalTime, long written, JsonObject extra,
        List<QuantPiece>? quantPieces)
    {
        var byName = outputs.ToDictionary(x => x.Name, StringComparer.Ordinal);
        var fileOf = shards.SelectMany(s => s.Tensors.Select(t => (t.Name, s.FileName))).ToDictionary(x => x.Name, x => x.FileName, StringComparer.Ordinal);
        var r = new JsonObject
        {
            ["tool"] = "mtp convert",
            ["direction"] = direction,
            ["family"] = family,
            ["options"] = new JsonObject
            {
                ["dtype"] = o.DType?.Name(), ["expert_layout"] = o.PerExpertLayout ? "per-expert" : "stacked", ["allow_unknown"] = o.AllowUnknown,
                ["max_shard_bytes"] = o.MaxShardBytes, ["reference"] = o.Reference,
            },
            ["source"] = SourceSummary(inDir, src),
            ["target"] = new JsonObject
            {
                ["path"] = Path.GetFullPath(outDir), ["tensors"] = outputs.Count, ["bytes"] = written, ["shards"] = Arr(shards.Select(s => s.FileName)),
                ["dtype_counts"] = Counts(outputs.Select(t => t.DType)),
            },
            ["timings"] = new JsonObject { ["plan_seconds"] = Math.Round(plan.TotalSeconds, 3), ["total_seconds"] = Math.Round(totalTime.TotalSeconds, 3) },
            ["bytes"] = new JsonObject { ["read"] = src.TotalTensorBytes, ["written"] = written },
            ["tensors"] = new JsonArray(shards.SelectMany(s => s.Tensors).Select(t => byName[t.Name]).Select(t => (JsonNode)new JsonObject
            {
                ["name"] = t.Name, ["dtype"] = t.DType.Name(), ["shape"] = Arr(t.Shape), ["file"] = fileOf[t.Name],
                ["sources"] = Arr(t.Sources.Distinct()), ["ops"] = Arr(t.Ops),
            }).ToArray()),
            ["dropped"] = new JsonArray(dropped.Select(d => (JsonNode)new JsonObject { ["name"] = d.Item1, ["reason"] = d.Item2 }).ToArray()),
            ["carried_unknown"] = Arr(carried),
        };
        if (quantPieces != null && o.Reference != null)
            r["reference_use"] = new JsonObject
            {
                ["reencoded_exactly_from_scales"] = quantPieces.Count(q => q.Exact),
                ["compared_with_reference_codes"] = quantPieces.Count(q => q.ReadReferenceCodes),
            };
        if (quantPieces != null)
            r["requantized"] = new JsonArray(quantPieces.Where(q => !q.Unchanged).Select(q => (JsonNode)new JsonObject { ["name"] = q.WeightName, ["new_scale_blocks"] = q.ChangedBlocks }).ToArray());
        foreach (var kv in extra.ToList())
        {
            extra.Remove(kv.Key);
            r[kv.Key] = kv.Value;
        }
        return r;
    }

    /// <summary>The report's <c>source</c> object: where the input is and what it holds.</summary>
    internal static JsonObject SourceSummary(string inDir, Checkpoint src) => new()
    {
        ["path"] = Path.GetFullPath(inDir), ["tensors"] = src.Tensors.Count, ["bytes"] = src.TotalTensorBytes, ["files"] = src.Files.Count,
        ["dtype_counts"] = Counts(src.Tensors.Select(t => t.Info.DType)),
    };

    static JsonObject Counts(IEnumerable<DType> d)
    {
        var o = new JsonObject();
        foreach (var g in d.GroupBy(x => x).OrderBy(g => g.Key.Name(), StringComparer.Ordinal)) o[g.Key.Name()] = g.Count();
        return o;
    }
}
