using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;

namespace Mtp.SafeTensors.IO;

/// <summary>
/// Page-cache hints for streaming hundreds of GB through a machine without filling its memory: start the read-ahead of a
/// range, start or wait for the write-back of a range, and drop a range that is no longer needed. Linux only; elsewhere,
/// and wherever a call fails, they do nothing (hints never change what is read or written).
/// </summary>
public static class PageCache
{
    const int FadvRandom = 1, FadvSequential = 2, FadvWillNeed = 3, FadvDontNeed = 4;
    const uint SyncWaitBefore = 1, SyncWrite = 2, SyncWaitAfter = 4;
    static readonly bool Linux = OperatingSystem.IsLinux();
    static volatile bool _unavailable;

    [DllImport("libc", EntryPoint = "posix_fadvise")]
    static extern int Fadvise(nint fd, long offset, long length, int advice);

    [DllImport("libc", EntryPoint = "sync_file_range")]
    static extern int SyncFileRange(nint fd, long offset, long length, uint flags);

    /// <summary>Granularity of write-behind: the write-back of each chunk this size is started as soon as it is written.</summary>
    public const long WritebackChunk = 16L << 20;

    [DllImport("libc", EntryPoint = "sendfile", SetLastError = true)]
    static extern unsafe long SendFile(int outFd, int inFd, long* offset, nuint count);

    static readonly Lazy<SafeFileHandle> DevNull = new(() => File.OpenHandle("/dev/null", FileMode.Open, FileAccess.Write));

    /// <summary>
    /// Reads [offset, offset+length) of the file into the page cache and returns once it is there, without copying it to
    /// user space: the range is spliced to /dev/null (sendfile). On a virtual disk this reads faster than read() into a
    /// buffer or a WILLNEED hint, at a sixth of read()'s CPU time. False where that is not possible (the caller reads instead).
    /// </summary>
    public static unsafe bool Load(SafeFileHandle file, long offset, long length)
    {
        if (!Linux || _unavailable || file.IsInvalid || file.IsClosed) return false;
        bool added = false;
        try
        {
            file.DangerousAddRef(ref added);
            int inFd = (int)file.DangerousGetHandle(), outFd = (int)DevNull.Value.DangerousGetHandle();
            long at = offset, end = offset + length;
            while (at < end)
            {
                long n = SendFile(outFd, inFd, &at, (nuint)Math.Min(end - at, 1L << 30)); // advances at
                if (n < 0 && Marshal.GetLastPInvokeError() == 4 /* EINTR */) continue;
                if (n <= 0) return n == 0; // 0: end of file
            }
            return true;
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException or IOException or UnauthorizedAccessException) { return false; }
        finally { if (added) file.DangerousRelease(); }
    }

    /// <summary>Tells the kernel that the file will be read at scattered places (no read-ahead): small reads then cost a page, not a read-ahead window.</summary>
    public static void Random(SafeFileHandle file) => Fadv(file, 0, long.MaxValue, FadvRandom);

    /// <summary>Tells the kernel that the file will be read front to back (a larger read-ahead window).</summary>
    public static void Sequential(SafeFileHandle file) => Fadv(file, 0, long.MaxValue, FadvSequential);

    /// <summary>Asks the kernel to read [offset, offset+length) of the file into the page cache, without copying it to us.</summary>
    public static void WillNeed(SafeFileHandle file, long offset, long length) => Fadv(file, offset, length, FadvWillNeed);

    /// <summary>
    /// Drops the clean cached pages wholly inside [offset, offset+length) (partial pages at the ends are kept: a neighbour
    /// may still need them). Pages mapped by a process, or dirty, stay.
    /// </summary>
    public static void Drop(SafeFileHandle file, long offset, long length)
    {
        long page = Environment.SystemPageSize;
        long a = (offset + page - 1) / page * page, e = (offset + length) / page * page;
        if (e > a) Fadv(file, a, e - a, FadvDontNeed);
    }

    /// <summary>Starts writing the dirty pages of the range to disk and returns at once.</summary>
    public static void StartWriteback(SafeFileHandle file, long offset, long length) => Sync(file, offset, length, SyncWrite);

    /// <summary>Writes the range to disk, waits until it is there, then drops it from the cache (it is clean by then).</summary>
    public static void WritebackAndDrop(SafeFileHandle file, long offset, long length)
    {
        Sync(file, offset, length, SyncWaitBefore | SyncWrite | SyncWaitAfter);
        Drop(file, offset, length);
    }

    static void Fadv(SafeFileHandle file, long offset, long length, int advice) =>
        WithFd(file, length, fd => Fadvise(fd, offset, length, advice));

    static void Sync(SafeFileHandle file, long offset, long length, uint flags) =>
        WithFd(file, length, fd => SyncFileRange(fd, offset, length, flags));

    /// <summary>Calls <paramref name="call"/> with the handle's descriptor, kept open meanwhile; a no-op off Linux or without libc.</summary>
    static void WithFd(SafeFileHandle file, long length, Func<nint, int> call)
    {
        if (!Linux || _unavailable || length <= 0 || file.IsInvalid || file.IsClosed) return;
        bool added = false;
        try
        {
            file.DangerousAddRef(ref added);
            call(file.DangerousGetHandle());
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException) { _unavailable = true; }
        finally { if (added) file.DangerousRelease(); }
    }
}

