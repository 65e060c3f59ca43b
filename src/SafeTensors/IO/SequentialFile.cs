using System.Collections.Concurrent;
using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;

namespace Mtp.SafeTensors.IO;

/// <summary>How a <see cref="SequentialFile"/> moves its bytes to the disk.</summary>
public enum WriteMode
{
    /// <summary>Through the page cache, left there (a file that is read back at once).</summary>
    Cached,
    /// <summary>Through the page cache under write-behind: written back as it goes and dropped once on disk.</summary>
    WriteBehind,
    /// <summary>
    /// Straight to the disk (O_DIRECT, Linux x64/arm64) from aligned staging buffers written by background threads, so the
    /// caller only copies into memory; falls back to <see cref="WriteBehind"/> where the file system refuses direct I/O.
    /// </summary>
    Direct,
}

/// <summary>
/// A file written front to back (a checkpoint shard). The caller appends; <see cref="Complete"/> makes everything durable
/// (fsync). The bytes on disk are the same in every <see cref="WriteMode"/>; only the cost of getting them there differs.
/// </summary>
public abstract class SequentialFile : IDisposable
{
    /// <summary>Bytes appended so far.</summary>
    public abstract long Position { get; }
    /// <summary>The mode actually in use (Direct may have fallen back).</summary>
    public abstract WriteMode Mode { get; }
    /// <summary>Appends bytes at <see cref="Position"/>.</summary>
    public abstract void Write(ReadOnlySpan<byte> bytes);
    /// <summary>Sets the file's length up front (no data is written): the final size, known from the header.</summary>
    public abstract void Reserve(long length);
    /// <summary>Writes out everything appended, truncates the file to <see cref="Position"/> and fsyncs it.</summary>
    public abstract void Complete();
    /// <summary>Closes the file (an incomplete one is left as it is; the caller deletes it).</summary>
    public abstract void Dispose();

    /// <summary>The default write-behind depth of <see cref="WriteMode.WriteBehind"/> files: 128 MiB under write-back at most.</summary>
    public const long DefaultWriteBehindBytes = 128L << 20;

    /// <summary>Creates (truncates) <paramref name="path"/> for writing in <paramref name="mode"/>.</summary>
    public static SequentialFile Create(string path, WriteMode mode, long writeBehindBytes = DefaultWriteBehindBytes)
    {
        if (mode == WriteMode.Direct && DirectFile.TryOpen(path) is { } direct) return direct;
        return new CachedFile(path, mode == WriteMode.Cached ? 0 : writeBehindBytes);
    }
}

/// <summary>Buffered writes through a FileStream, with optional write-behind.</summary>
sealed class CachedFile : SequentialFile
{
    readonly FileStream _fs;
    readonly WriteBehind? _behind;

    public CachedFile(string path, long writeBehind)
    {
        _fs = new FileStream(path, FileMode.Create, FileAccess.ReadWrite, FileShare.None, 1 << 20);
        if (writeBehind > 0) _behind = new WriteBehind(_fs.SafeFileHandle, 0, writeBehind);
    }

    public override long Position => _fs.Position;
    public override WriteMode Mode => _behind != null ? WriteMode.WriteBehind : WriteMode.Cached;
    public override void Reserve(long length)
    {
        long at = _fs.Position;
        _fs.SetLength(length);
        _fs.Position = at;
    }
    public override void Write(ReadOnlySpan<byte> bytes)
    {
        _fs.Write(bytes);
        if (_behind != null && _behind.Due(_fs.Position))
        {
            _fs.Flush(); // the buffered tail must reach the kernel before its write-back is asked for
            _behind.Written(_fs.Position);
        }
    }
    public override void Complete()
    {
        _fs.SetLength(_fs.Position);
        _fs.Flush(flushToDisk: true);
        _behind?.Synced(_fs.Length); // clean now: keep the cache bounded
    }
    public override void Dispose() => _fs.Dispose();
}

/// <summary>
/// O_DIRECT writes: the caller's bytes are copied into 4 KiB-aligned staging buffers; full buffers are written at aligned
/// offsets by two I/O threads (two requests in flight keep a virtual disk busy). The tail is padded to the alignment, written,
/// and the file truncated back to its true length.
/// </summary>
sealed unsafe class DirectFile : SequentialFile
{
    const int Align = 4096;
    const int BufferBytes = 8 << 20;
    const int IoThreads = 2, Buffers = IoThreads + 2;

    readonly int _fd;
    readonly string _path;
    readonly BlockingCollection<(nint Buf, long Offset, int Length)> _queue = new();
    readonly BlockingCollection<nint> _free = new();
    readonly List<nint> _all = new();
    readonly Thread[] _threads;
    readonly CountdownEvent _pending = new(1);
    Exception? _failure;
    nint _cur;
    int _fill;
    long _bufStart;
    bool _disposed;

    DirectFile(int fd, string path)
    {
        _fd = fd;
        _path = path;
        for (int i = 0; i < Buffers; i++)
        {
            nint b = (nint)NativeMemory.AlignedAlloc((nuint)BufferBytes, Align);
            _all.Add(b);
            _free.Add(b);
        }
        _cur = _free.Take();
        _threads = Enumerable.Range(0, IoThreads).Select(_ => new Thread(Io) { IsBackground = true, Name = "mtp-direct-write" }).ToArray();
        foreach (var t in _threads) t.Start();
    }

    public static DirectFile? TryOpen(string path)
    {
        int flag = RuntimeInformation.ProcessArchitecture switch { Architecture.X64 => 0x4000, Architecture.Arm64 => 0x10000, _ => 0 };
        if (!OperatingSystem.IsLinux() || flag == 0) return null;
        try
        {
            const int WrOnly = 1, Creat = 0x40, Trunc = 0x200, CloExec = 0x80000;
            int fd = Open(path, WrOnly | Creat | Trunc | CloExec | flag, 0x1A4 /* 0644 */);
            return fd < 0 ? null : new DirectFile(fd, path); // EINVAL (tmpfs, some network file systems): the caller falls back
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException) { return null; }
    }

    public override long Position => _bufStart + _fill;
    public override WriteMode Mode => WriteMode.Direct;

    public override void Reserve(long length)
    {
        if (Ftruncate(_fd, length) != 0) throw Error("reserving", length);
    }

    public override void Write(ReadOnlySpan<byte> bytes)
    {
        while (!bytes.IsEmpty)
        {
            int n = Math.Min(bytes.Length, BufferBytes - _fill);
            bytes[..n].CopyTo(new Span<byte>((void*)(_cur + _fill), n));
            _fill += n;
            bytes = bytes[n..];
            if (_fill == BufferBytes) Submit(BufferBytes);
        }
    }

    void Submit(int length)
    {
        if (_failure != null) throw new IOException(_failure.Message, _failure);
        _pending.AddCount();
        _queue.Add((_cur, _bufStart, length));
        _bufStart += _fill;
        _fill = 0;
        _cur = _free.Take();
    }

    void Io()
    {
        foreach (var (buf, offset, length) in _queue.GetConsumingEnumerable())
        {
            try
            {
                if (_failure == null)
                    for (int done = 0; done < length;)
                    {
                        long w = Pwrite(_fd, buf + done, (nuint)(length - done), offset + done);
                        if (w < 0 && Marshal.GetLastPInvokeError() == 4 /* EINTR */) continue;
                        if (w <= 0) throw Error("writing", offset + done);
                        done += (int)w;
                    }
            }
            catch (Exception e) { _failure ??= e; }
            finally
            {
                _free.Add(buf);
                _pending.Signal();
            }
        }
    }

    IOException Error(string what, long at)
    {
        int errno = Marshal.GetLastPInvokeError();
        return new IOException($"{_path}: {what} at byte {at}: {Marshal.GetPInvokeErrorMessage(errno)} (errno {errno})");
    }

    public override void Complete()
    {
        long length = Position;
        if (_fill > 0)
        {
            int padded = (_fill + Align - 1) / Align * Align;
            new Span<byte>((void*)(_cur + _fill), padded - _fill).Clear();
            _fill = padded;
            Submit(padded);
        }
        _pending.Signal();
        _pending.Wait();
        if (_failure != null) throw new IOException(_failure.Message, _failure);
        if (Ftruncate(_fd, length) != 0) throw Error("truncating", length);
        if (Fsync(_fd) != 0) throw Error("fsync", length);
        _bufStart = length;
        _fill = 0;
    }

    public override void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        _queue.CompleteAdding();
        foreach (var t in _threads) t.Join();
        Close(_fd);
        foreach (nint b in _all) NativeMemory.AlignedFree((void*)b);
        _queue.Dispose();
        _free.Dispose();
        _pending.Dispose();
    }

    [DllImport("libc", EntryPoint = "open", SetLastError = true)]
    static extern int Open(string path, int flags, int mode);
    [DllImport("libc", EntryPoint = "pwrite", SetLastError = true)]
    static extern long Pwrite(int fd, nint buf, nuint count, long offset);
    [DllImport("libc", EntryPoint = "ftruncate", SetLastError = true)]
    static extern int Ftruncate(int fd, long length);
    [DllImport("libc", EntryPoint = "fsync", SetLastError = true)]
    static extern int Fsync(int fd);
    [DllImport("libc", EntryPoint = "close", SetLastError = true)]
    static extern int Close(int fd);
}
