using Microsoft.Win32.SafeHandles;

namespace Mtp.SafeTensors.IO;

/// <summary>
/// Write-behind for one sequentially written file: the write-back of every <see cref="PageCache.WritebackChunk"/> written is
/// started at once, and once more than <see cref="Depth"/> bytes are under write-back the oldest chunk is waited for and
/// dropped from the page cache. A stream of hundreds of GB then holds only about <see cref="Depth"/> of dirty cache, and the
/// disk writes while the data is still being produced.
/// </summary>
public sealed class WriteBehind
{
    readonly SafeFileHandle _file;
    long _writebackFrom, _dropFrom;

    /// <summary>Starts at <paramref name="start"/>: bytes before it (a header) are left alone.</summary>
    public WriteBehind(SafeFileHandle file, long start, long depth)
    {
        _file = file;
        _writebackFrom = _dropFrom = start;
        Depth = depth;
    }

    /// <summary>Bytes allowed under write-back before the writer waits for the oldest chunk.</summary>
    public long Depth { get; }

    /// <summary>Call after the bytes up to <paramref name="end"/> have reached the kernel (not a user-space buffer).</summary>
    public void Written(long end)
    {
        for (; end - _writebackFrom >= PageCache.WritebackChunk; _writebackFrom += PageCache.WritebackChunk)
            PageCache.StartWriteback(_file, _writebackFrom, PageCache.WritebackChunk);
        for (; _writebackFrom - _dropFrom > Depth; _dropFrom += PageCache.WritebackChunk)
            PageCache.WritebackAndDrop(_file, _dropFrom, PageCache.WritebackChunk);
    }

    /// <summary>Whether <see cref="Written"/> would start a write-back at <paramref name="end"/>.</summary>
    public bool Due(long end) => end - _writebackFrom >= PageCache.WritebackChunk;

    /// <summary>Call after the file is fsynced: drops what is left of it from the cache (clean by then).</summary>
    public void Synced(long end) => PageCache.Drop(_file, _dropFrom, end - _dropFrom);
}
