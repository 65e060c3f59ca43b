using System.Runtime.InteropServices;

namespace Mtp.Adapters;

/// <summary>
/// Native buffers for the pieces in flight, reused: a fresh multi-MB allocation per piece costs a page fault and a page
/// clear per 4 KiB (and an munmap after), which on 2 cores was a sixth of a conversion's CPU time. Thread-safe; holds at
/// most <c>maxPooledBytes</c> of idle buffers.
/// </summary>
internal sealed unsafe class BufferPool(long maxPooledBytes) : IDisposable
{
    const long Granule = 1 << 20;
    readonly List<(nint Ptr, long Capacity)> _free = new();
    long _pooled;

    /// <summary>A buffer of at least <paramref name="bytes"/> bytes and its capacity (give both back to <see cref="Return"/>).</summary>
    public (nint Ptr, long Capacity) Rent(long bytes)
    {
        bytes = Math.Max(1, bytes);
        lock (_free)
        {
            int best = -1;
            for (int i = 0; i < _free.Count; i++)
                if (_free[i].Capacity >= bytes && (best < 0 || _free[i].Capacity < _free[best].Capacity)) best = i;
            if (best >= 0)
            {
                var b = _free[best];
                _free.RemoveAt(best);
                _pooled -= b.Capacity;
                return b;
            }
        }
        long cap = (bytes + Granule - 1) / Granule * Granule;
        return ((nint)NativeMemory.Alloc((nuint)cap), cap);
    }

    /// <summary>Keeps the buffer for reuse, or frees it when the pool is full.</summary>
    public void Return(nint ptr, long capacity)
    {
        if (ptr == 0) return;
        lock (_free)
        {
            if (_pooled + capacity <= maxPooledBytes)
            {
                _free.Add((ptr, capacity));
                _pooled += capacity;
                return;
            }
        }
        NativeMemory.Free((void*)ptr);
    }

    /// <summary>Frees every idle buffer.</summary>
    public void Dispose()
    {
        lock (_free)
        {
            foreach (var (p, _) in _free) NativeMemory.Free((void*)p);
            _free.Clear();
            _pooled = 0;
        }
    }
}
