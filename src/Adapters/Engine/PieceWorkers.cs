using System.Runtime.ExceptionServices;
using Mtp.Quant;

namespace Mtp.Adapters;

/// <summary>
/// The workers of the shard pipeline: threads that compute the scheduled pieces in order, ahead of the writer, with at most
/// half of <see cref="ConvertOptions.MaxMemoryBytes"/> and 2 x threads + 2 pieces in flight. The writer takes each piece's
/// buffer (<see cref="Take"/>) and hands it back once written (<see cref="Release"/>); the first failure stops them all and
/// is rethrown to the writer.
/// </summary>
internal sealed unsafe class PieceWorkers
{
    readonly List<PipelineSlot> _slots;
    readonly BufferPool _pool;
    readonly SourceStream _source;
    readonly ReadAhead _readAhead;
    readonly CancellationToken _cancel;
    readonly List<Thread> _threads;
    readonly object _gate = new();
    readonly long _budget;
    readonly int _maxItems;
    readonly KernelOptions _kernel = new() { MaxThreads = 1 };
    int _next, _inFlight;
    long _inFlightBytes;
    bool _stop;
    Exception? _failure;

    /// <summary>Workers over <paramref name="schedule"/>'s computed slots; not started yet.</summary>
    public PieceWorkers(PipelineSchedule schedule, ConvertOptions options, int threads, PipelineIo io)
    {
        _slots = schedule.Computed;
        _pool = io.Pool;
        _source = io.Source;
        _readAhead = io.ReadAhead;
        _cancel = options.Cancel;
        _budget = Math.Max(1, options.MaxMemoryBytes / 2);
        _maxItems = 2 * threads + 2;
        _threads = Enumerable.Range(0, _slots.Count == 0 ? 0 : threads).Select(_ => new Thread(Work) { IsBackground = true, Name = "mtp-convert" }).ToList();
    }

    /// <summary>Set once the pipeline shuts down (the read-ahead stops with it).</summary>
    public bool Stopped => Volatile.Read(ref _stop);

    /// <summary>Starts the threads.</summary>
    public void Start() { foreach (var t in _threads) t.Start(); }

    /// <summary>Wakes every thread waiting on the gate (on cancellation: they then stop as on a failure).</summary>
    public void Wake() { lock (_gate) Monitor.PulseAll(_gate); }

    /// <summary>Stops the workers and waits for them.</summary>
    public void StopAndJoin()
    {
        lock (_gate) { _stop = true; Monitor.PulseAll(_gate); }
        foreach (var t in _threads) t.Join();
    }

    /// <summary>Returns the buffers of pieces computed but never written (after a failure).</summary>
    public void ReturnLeftovers()
    {
        foreach (var s in _slots) if (s.Buffer != 0) { _pool.Return(s.Buffer, s.Capacity); s.Buffer = 0; }
    }

    /// <summary>Waits until <paramref name="slot"/> is computed and returns its buffer; rethrows a worker's failure.</summary>
    public nint Take(PipelineSlot slot)
    {
        lock (_gate)
        {
            while (!slot.Done && _failure == null && !_cancel.IsCancellationRequested) Monitor.Wait(_gate);
            if (_failure != null) ExceptionDispatchInfo.Capture(_failure).Throw();
            _cancel.ThrowIfCancellationRequested();
            return slot.Buffer;
        }
    }

    /// <summary>The writer is done with <paramref name="slot"/>'s buffer: back to the pool, and its budget is free again.</summary>
    public void Release(PipelineSlot slot, nint buffer)
    {
        _pool.Return(buffer, slot.Capacity);
        lock (_gate) { slot.Buffer = 0; _inFlight--; _inFlightBytes -= slot.P.Bytes; Monitor.PulseAll(_gate); }
    }

    void Work()
    {
        while (Claim() is PipelineSlot slot)
        {
            _readAhead.Advance(slot);
            nint buf = 0;
            long cap = 0;
            try
            {
                (buf, cap) = _pool.Rent(slot.P.Bytes);
                Produce(slot, buf);
                foreach (Src s in slot.P.Consumed) _source.Release(s, 0, s.Length);
                lock (_gate) { slot.Buffer = buf; slot.Capacity = cap; slot.Done = true; Monitor.PulseAll(_gate); }
            }
            catch (Exception e)
            {
                _pool.Return(buf, cap);
                lock (_gate) { _failure ??= e; Monitor.PulseAll(_gate); }
                return;
            }
        }
    }

    // The next slot, once the budget allows it and the slot it waits for is done; null: stop.
    PipelineSlot? Claim()
    {
        lock (_gate)
        {
            while (true)
            {
                if (_stop || _failure != null || _next >= _slots.Count || _cancel.IsCancellationRequested) return null;
                long b = _slots[_next].P.Bytes;
                if (_inFlight == 0 || (_inFlight < _maxItems && _inFlightBytes + b <= _budget)) break;
                Monitor.Wait(_gate);
            }
            PipelineSlot slot = _slots[_next++];
            _inFlight++;
            _inFlightBytes += slot.P.Bytes;
            if (slot.WaitFor >= 0)
                while (!_slots[slot.WaitFor].Done && _failure == null && !_stop) Monitor.Wait(_gate);
            return _failure != null || _stop ? null : slot;
        }
    }

    void Produce(PipelineSlot slot, nint buf)
    {
        try { slot.P.Produce(new Span<byte>((void*)buf, checked((int)slot.P.Bytes)), _kernel); }
        catch (Exception e) when (e is ArgumentException or InvalidDataException or InvalidOperationException)
        {
            throw new AdapterException(AdapterErrorKind.Malformed, $"tensor '{slot.T.Name}' (from {string.Join(", ", slot.T.Sources.Take(2))}): {e.Message.Replace('\n', ' ')}", e);
        }
    }
}
