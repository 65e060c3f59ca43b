using System.Runtime.ExceptionServices;
using Mtp.SafeTensors;
using Mtp.SafeTensors.IO;

namespace Mtp.Adapters;

/// <summary>The pipeline's shared I/O: pooled piece buffers, the source files' read-ahead / drop-behind, and the read-ahead cursor.</summary>
internal sealed record PipelineIo(BufferPool Pool, SourceStream Source, ReadAhead ReadAhead);

/// <summary>
/// Writes shards of a <see cref="ConversionPlan"/> into a directory as a pipeline of named parts: the
/// <see cref="PipelineSchedule"/> orders the pieces, the <see cref="ReadAhead"/> keeps their sources in the page cache,
/// the <see cref="PieceWorkers"/> compute the row-block pieces ahead of the writer, and the writer (the calling thread)
/// streams them and the plain copies (straight from the map) into each shard, completing each shard in the background.
/// Source pages are dropped from the mapping once used, so resident memory does not grow with the checkpoint.
/// </summary>
internal sealed unsafe class ShardPipeline
{
    const int CopyChunk = 32 << 20;

    readonly ConversionPlan _plan;
    readonly IReadOnlyList<ShardPlan> _shards;
    readonly string _dir;
    readonly ConvertProgress? _progress;
    readonly CancellationToken _cancel;
    readonly PipelineSchedule _schedule;
    readonly PipelineIo _io;
    readonly PieceWorkers _workers;
    readonly List<SafeTensorsWriter> _open = new();
    readonly List<Task> _completing = new();
    long _written;

    /// <summary>A pipeline writing <paramref name="shards"/> (all of the plan's, or one part's) of <paramref name="plan"/> into <paramref name="dir"/>.</summary>
    public ShardPipeline(ConversionPlan plan, IReadOnlyList<ShardPlan> shards, string dir, ConvertProgress? progress)
    {
        _plan = plan;
        _shards = shards;
        _dir = dir;
        _progress = progress;
        ConvertOptions o = plan.Options;
        _cancel = o.Cancel;
        _schedule = new PipelineSchedule(shards, plan.ByName, o.BlockBytes);
        // Drop-behind of the sources: a 1.6 TB stream must not push everything else out of memory, and reusing just-freed
        // pages is cheaper than taking new ones.
        var source = new SourceStream(o.DropBehind);
        var readAhead = new ReadAhead(_schedule, source, () => _workers!.Stopped || _cancel.IsCancellationRequested);
        _io = new PipelineIo(new BufferPool(Math.Min(Math.Max(1, o.MaxMemoryBytes / 2), 256L << 20)), source, readAhead);
        _workers = new PieceWorkers(_schedule, o, plan.Threads, _io);
    }

    /// <summary>Writes every shard; returns the tensor bytes written.</summary>
    public long Run()
    {
        // A cancellation wakes the writer (and the workers) waiting on the gate; they then stop as on a failure.
        using var wake = _cancel.Register(_workers.Wake);
        _workers.Start();
        _io.ReadAhead.Start();
        try
        {
            for (int si = 0; si < _shards.Count; si++) WriteShard(_shards[si], _schedule.PerShard[si]);
            try { Task.WaitAll(_completing.ToArray()); }
            catch (AggregateException ae) { ExceptionDispatchInfo.Capture(ae.InnerExceptions[0]).Throw(); }
        }
        finally { Shutdown(); }
        return _written;
    }

    void WriteShard(ShardPlan shard, List<PipelineSlot> slots)
    {
        _cancel.ThrowIfCancellationRequested();
        var mode = _plan.Options.DropBehind ? WriteMode.Direct : WriteMode.Cached;
        var writer = SafeTensorsWriter.Create(Path.Combine(_dir, shard.FileName), shard.Tensors, _plan.ShardMetadata(shard.FileName), mode);
        _open.Add(writer);
        foreach (PipelineSlot slot in slots)
        {
            if (slot.Computed) AppendComputed(writer, slot);
            else AppendCopy(writer, slot);
        }
        // fsync + rename in the background: the next shard is produced while this one reaches the disk.
        string msg = $"wrote {shard.FileName} ({shard.Tensors.Count} tensors, {shard.Bytes:N0} bytes)";
        _completing.Add(Task.Run(() => { try { writer.Complete(); } finally { writer.Dispose(); } })); // a failed fsync still closes the file
        _open.Remove(writer);
        _progress?.Log?.Invoke(msg);
    }

    void AppendCopy(SafeTensorsWriter writer, PipelineSlot slot)
    {
        Src d = slot.P.Direct!.Value;
        var data = d.File.GetData(d.Info);
        _io.ReadAhead.Advance(slot);
        for (long off = 0; off < d.Length; off += CopyChunk)
        {
            _cancel.ThrowIfCancellationRequested();
            int n = (int)Math.Min(CopyChunk, d.Length - off);
            writer.Append(data.Slice(d.Offset + off, n));
            _io.Source.Release(d, off, n);
            _written += n;
            _progress?.Advanced?.Invoke(n, slot.T.Name);
        }
    }

    void AppendComputed(SafeTensorsWriter writer, PipelineSlot slot)
    {
        nint buf = _workers.Take(slot);
        long bytes = slot.P.Bytes;
        try { writer.Append(new ReadOnlySpan<byte>((void*)buf, checked((int)bytes))); }
        finally { _workers.Release(slot, buf); }
        _written += bytes;
        _progress?.Advanced?.Invoke(bytes, slot.T.Name);
    }

    void Shutdown()
    {
        foreach (var w in _open) w.Dispose();
        try { Task.WaitAll(_completing.ToArray()); } catch (AggregateException) { }
        _workers.StopAndJoin();
        _io.ReadAhead.Join();
        _io.Source.Dispose();
        _workers.ReturnLeftovers();
        _io.Pool.Dispose();
    }
}
