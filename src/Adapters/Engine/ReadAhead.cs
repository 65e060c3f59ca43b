namespace Mtp.Adapters;

/// <summary>
/// The read-ahead of the shard pipeline: a cursor over the whole schedule (copies and computed pieces) that the workers and
/// the writer advance, and threads that keep about <see cref="AheadBytes"/> of source past it in the page cache (no resident
/// memory of ours), so neither the workers nor the writer wait on the disk.
/// </summary>
internal sealed class ReadAhead
{
    /// <summary>Source bytes kept loaded ahead of the furthest claimed piece.</summary>
    const long AheadBytes = 512L << 20;
    /// <summary>Two threads keep a second request in flight (measured at 4 GB: as fast as one, with less CPU).</summary>
    const int ThreadCount = 2;

    readonly PipelineSchedule _schedule;
    readonly SourceStream _source;
    readonly Func<bool> _stopped;
    readonly List<IEnumerable<Src>> _inputs;
    readonly object _planLock = new();
    readonly List<Thread> _threads;
    int _position, _planned;

    /// <summary>Reads ahead of <paramref name="schedule"/> through <paramref name="source"/> until <paramref name="stopped"/>.</summary>
    public ReadAhead(PipelineSchedule schedule, SourceStream source, Func<bool> stopped)
    {
        _schedule = schedule;
        _source = source;
        _stopped = stopped;
        _inputs = schedule.All.Select(x => x.P.Inputs).ToList();
        _threads = Enumerable.Range(0, schedule.All.Count == 0 ? 0 : ThreadCount)
            .Select(_ => new Thread(Loop) { IsBackground = true, Name = "mtp-readahead" }).ToList();
    }

    /// <summary>Moves the cursor to <paramref name="at"/> (never back).</summary>
    public void Advance(PipelineSlot at)
    {
        int f = _schedule.PositionOf(at);
        int cur;
        while ((cur = Volatile.Read(ref _position)) < f && Interlocked.CompareExchange(ref _position, f, cur) != cur) { }
    }

    /// <summary>Starts the threads.</summary>
    public void Start() { foreach (var t in _threads) t.Start(); }

    /// <summary>Waits for the threads (after the stop condition became true).</summary>
    public void Join() { foreach (var t in _threads) t.Join(); }

    void Loop()
    {
        var runs = new List<(Src, long, long)>();
        var all = _schedule.All;
        long[] prefix = _schedule.InputPrefix;
        while (!_stopped())
        {
            bool have = false;
            int from = 0, to = 0;
            lock (_planLock)
            {
                int cur = Volatile.Read(ref _position);
                if (_planned < cur) _planned = cur;
                if (_planned >= all.Count) return;
                if (prefix[_planned] - prefix[cur] < AheadBytes) { from = _planned; _planned = to = SourceStream.PlanBatch(_inputs, _planned, runs); have = true; }
            }
            if (!have) { Thread.Sleep(2); continue; }
            _source.Load(runs, _stopped);
            // Pieces the workers finished while this batch was loading were dropped before the load put them back.
            for (int f = from; f < to; f++)
                if (Volatile.Read(ref all[f].Done)) foreach (Src s in all[f].P.Consumed) _source.Evict(s);
        }
    }
}
