using System.Collections.Concurrent;
using Microsoft.Win32.SafeHandles;
using Mtp.SafeTensors;
using Mtp.SafeTensors.IO;

namespace Mtp.Adapters;

/// <summary>
/// The source side of a conversion: reads the inputs of the scheduled pieces into the page cache ahead of the workers, and
/// drops them again once consumed. Read-ahead takes the next batch of pieces, merges their ranges per file into contiguous
/// runs and loads each run into the page cache with large sequential sendfile calls to /dev/null (no copy to user space):
/// on a virtual disk that is faster than a WILLNEED hint or many small interleaved reads, and cheaper than read().
/// </summary>
internal sealed class SourceStream : IDisposable
{
    const long Batch = 128L << 20, ReadChunk = 16L << 20, MergeGap = 1L << 20;

    readonly ConcurrentDictionary<string, SafeFileHandle?> _handles = new(StringComparer.Ordinal);
    readonly bool _dropBehind;
    [ThreadStatic] static byte[]? _scratch;

    public SourceStream(bool dropBehind) => _dropBehind = dropBehind;

    SafeFileHandle? Handle(string path) => _handles.GetOrAdd(path, p =>
    {
        try { return File.OpenHandle(p, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete, FileOptions.SequentialScan); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { return null; }
    });

    static long Start(Src x) => x.File.AbsoluteOffset(x.Info) + x.Offset;

    /// <summary>Done with [off, off+n) of <paramref name="x"/>: unmap its pages and (drop-behind) evict them from the cache.</summary>
    public void Release(Src x, long off, long n)
    {
        MappedPages.Unmap(x, off, n);
        if (_dropBehind && Handle(x.File.Path) is { } h) PageCache.Drop(h, Start(x) + off, n);
    }

    /// <summary>Drop-behind only: evicts <paramref name="x"/> from the page cache (its mapping is left alone).</summary>
    public void Evict(Src x)
    {
        if (_dropBehind && Handle(x.File.Path) is { } h) PageCache.Drop(h, Start(x), x.Length);
    }

    /// <summary>
    /// Plans the read-ahead of the inputs of <paramref name="pieces"/>[from..] up to about <see cref="Batch"/> bytes: their
    /// ranges merged per file into contiguous runs. Returns the index after the last piece covered.
    /// </summary>
    public static int PlanBatch(IReadOnlyList<IEnumerable<Src>> pieces, int from, List<(Src Any, long Start, long End)> runs)
    {
        int end = from;
        long bytes = 0;
        var ranges = new List<(string Path, Src Any, long Start, long End)>();
        while (end < pieces.Count && (end == from || bytes < Batch))
        {
            foreach (Src x in pieces[end])
            {
                ranges.Add((x.File.Path, x, Start(x), Start(x) + x.Length));
                bytes += x.Length;
            }
            end++;
        }
        runs.Clear();
        foreach (var file in ranges.GroupBy(r => r.Path, StringComparer.Ordinal))
        {
            var sorted = file.OrderBy(r => r.Start).ToList();
            long s = sorted[0].Start, e = sorted[0].End;
            foreach (var r in sorted.Skip(1))
            {
                if (r.Start <= e + MergeGap) { e = Math.Max(e, r.End); continue; }
                runs.Add((sorted[0].Any, s, e));
                (s, e) = (r.Start, r.End);
            }
            runs.Add((sorted[0].Any, s, e));
        }
        return end;
    }

    /// <summary>Loads planned runs into the page cache (see <see cref="PlanBatch"/>). Thread-safe.</summary>
    public void Load(List<(Src Any, long Start, long End)> runs, Func<bool> stop)
    {
        foreach (var (any, s, e) in runs) Read(any, s, e, stop);
    }

    void Read(Src any, long start, long end, Func<bool> stop)
    {
        // No handle (unreadable file): no read-ahead; the workers fault the pages in themselves.
        if (Handle(any.File.Path) is not { } h) return;
        for (long off = start; off < end && !stop(); off += ReadChunk)
        {
            long n = Math.Min(ReadChunk, end - off);
            // sendfile to /dev/null (no copy); where it is refused, a read into a scratch buffer.
            if (PageCache.Load(h, off, n)) continue;
            try { RandomAccess.Read(h, (_scratch ??= new byte[ReadChunk]).AsSpan(0, (int)n), off); }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException) { PageCache.WillNeed(h, off, n); }
        }
    }

    public void Dispose()
    {
        foreach (var h in _handles.Values) h?.Dispose();
    }
}
