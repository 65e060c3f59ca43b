using Microsoft.Win32.SafeHandles;
using Mtp.SafeTensors;
using Mtp.SafeTensors.IO;

namespace Mtp.Adapters.Inspection;

/// <summary>
/// Reads scale tensors for inspect's numeric check with bounded memory and no read-ahead: positioned reads (not the
/// map) of at most <see cref="ChunkBytes"/> at a time into one reused buffer, on files advised for random access, each
/// range dropped from the page cache once checked. A released checkpoint's tens of thousands of small scales then cost
/// a page each instead of a read-ahead window, and FP4 group scales (1 byte per 32 values: 8.9 GB on DeepSeek-V4-Flash)
/// are sampled, one <see cref="SampleBytes"/> window per tensor, unless <see cref="Full"/>.
/// </summary>
sealed class ScaleReader
{
    /// <summary>Largest read.</summary>
    public const int ChunkBytes = 1 << 20;
    /// <summary>Bytes read of each FP4 group scale when sampling (smaller tensors are read whole).</summary>
    public const int SampleBytes = 4096;

    /// <summary>Shards read at the same time: scattered small reads are latency-bound, so several in flight cut the wall time on a virtual disk.</summary>
    public const int Parallelism = 8;

    long _bytesRead;
    int _tensorsRead, _tensorsSampled;

    /// <summary>Read FP4 group scales in full instead of sampling them.</summary>
    public bool Full { get; }
    /// <summary>Scale bytes read so far.</summary>
    public long BytesRead => Interlocked.Read(ref _bytesRead);
    /// <summary>Scale tensors read whole.</summary>
    public int TensorsRead => _tensorsRead;
    /// <summary>FP4 group scales of which only a window was read.</summary>
    public int TensorsSampled => _tensorsSampled;

    public ScaleReader(bool full) => Full = full;

    /// <summary>
    /// Non-finite scales (F32/BF16 NaN or infinity, E8M0 0xFF) of each item, in the items' order; of one window of an
    /// FP4 group scale (<c>Fp4</c>) unless <see cref="Full"/>. Each shard is read in offset order and dropped from the
    /// page cache when done; up to <see cref="Parallelism"/> shards at a time.
    /// </summary>
    public int[] CountNonFinite(IReadOnlyList<(TensorLocation Scale, bool Fp4)> items)
    {
        var result = new int[items.Count];
        var byFile = Enumerable.Range(0, items.Count).GroupBy(i => items[i].Scale.File.Path, StringComparer.Ordinal)
            .Select(g => g.OrderBy(i => items[i].Scale.Info.Begin).ToArray()).ToArray();
        try
        {
            Parallel.ForEach(byFile, new ParallelOptions { MaxDegreeOfParallelism = Parallelism }, indices => CountShard(items, indices, result));
        }
        catch (AggregateException e) when (e.InnerExceptions.Count > 0)
        {
            System.Runtime.ExceptionServices.ExceptionDispatchInfo.Capture(e.InnerExceptions[0]).Throw(); // one clear error, as a serial check would give
        }
        return result;
    }

    void CountShard(IReadOnlyList<(TensorLocation Scale, bool Fp4)> items, int[] indices, int[] result)
    {
        {
            SafeTensorsFile shard = items[indices[0]].Scale.File;
            using SafeFileHandle file = File.OpenHandle(shard.Path, FileMode.Open, FileAccess.Read, FileShare.Read);
            PageCache.Random(file);
            long largest = indices.Max(i => items[i].Scale.Info.ByteLength);
            var buffer = new byte[(int)Math.Min(ChunkBytes, Math.Max(1, largest))];
            foreach (int i in indices) result[i] = Count(file, buffer, items[i].Scale, items[i].Fp4);
            PageCache.Drop(file, 0, shard.FileLength); // what this check pulled in (small scales share pages with their neighbours)
        }
    }

    int Count(SafeFileHandle file, byte[] buffer, TensorLocation s, bool fp4Group)
    {
        long length = s.Info.ByteLength, from = 0;
        if (fp4Group && !Full && length > SampleBytes)
        {
            // a window at a place fixed by the name (the same on every run), aligned to the page
            long windows = length / SampleBytes;
            ulong h = 1469598103934665603UL;
            foreach (char c in s.Name) { h ^= c; h *= 1099511628211UL; }
            from = (long)(h % (ulong)windows) * SampleBytes;
            length = Math.Min(SampleBytes, s.Info.ByteLength - from);
            Interlocked.Increment(ref _tensorsSampled);
        }
        else Interlocked.Increment(ref _tensorsRead);
        long start = s.File.AbsoluteOffset(s.Info) + from;
        int elem = Math.Max(1, s.Info.DType.Bits() / 8), n = 0;
        for (long at = 0; at < length;)
        {
            int want = (int)Math.Min(buffer.Length, length - at);
            int got = RandomAccess.Read(file, buffer.AsSpan(0, want), start + at);
            if (got <= 0) throw new SafeTensorsException(SafeTensorsError.Io, s.File.Path, s.Name, $"file ended while reading scale '{s.Name}'");
            got -= got % elem;
            n += Count(s.Info.DType, buffer.AsSpan(0, got));
            if (length > ChunkBytes) PageCache.Drop(file, start + at, got); // a long stream: drop behind as it goes
            Interlocked.Add(ref _bytesRead, got);
            at += got;
        }
        return n;
    }

    static int Count(DType type, ReadOnlySpan<byte> b)
    {
        int n = 0;
        switch (type)
        {
            case DType.F32:
                foreach (uint v in System.Runtime.InteropServices.MemoryMarshal.Cast<byte, uint>(b)) if ((v & 0x7F800000u) == 0x7F800000u) n++;
                break;
            case DType.BF16:
                foreach (ushort v in System.Runtime.InteropServices.MemoryMarshal.Cast<byte, ushort>(b)) if ((v & 0x7F80) == 0x7F80) n++;
                break;
            case DType.F8_E8M0:
                n = b.Count((byte)0xFF); // vectorized
                break;
        }
        return n;
    }
}
