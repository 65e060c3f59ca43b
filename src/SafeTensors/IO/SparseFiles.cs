using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;

namespace Mtp.SafeTensors.IO;

/// <summary>
/// Where a file's holes are (lseek SEEK_DATA), so that a scan can skip ranges that are holes in every file it reads:
/// a hole reads as zeros, so two holes are equal without reading either. Linux only; elsewhere, and wherever the call is
/// not supported, every byte counts as data (the scan reads it).
/// </summary>
public static class SparseFiles
{
    const int SeekData = 3, SeekHole = 4;
    const int Enxio = 6;
    static readonly bool Linux = OperatingSystem.IsLinux();
    static volatile bool _unavailable;

    [DllImport("libc", EntryPoint = "lseek", SetLastError = true)]
    static extern long LSeek(int fd, long offset, int whence);

    /// <summary>
    /// The first offset at or after <paramref name="offset"/> that holds data; <paramref name="fileLength"/> when only a
    /// hole follows; <paramref name="offset"/> itself when that cannot be known (no SEEK_DATA here).
    /// </summary>
    public static long NextData(SafeFileHandle file, long offset, long fileLength) => Seek(file, offset, fileLength, SeekData, offset);

    /// <summary>
    /// The first offset at or after <paramref name="offset"/> where a hole starts (<paramref name="fileLength"/> when none
    /// does: the end of a file counts as a hole); <paramref name="fileLength"/> when that cannot be known (all data).
    /// </summary>
    public static long NextHole(SafeFileHandle file, long offset, long fileLength) => Seek(file, offset, fileLength, SeekHole, fileLength);

    static long Seek(SafeFileHandle file, long offset, long fileLength, int whence, long unknown)
    {
        if (offset >= fileLength) return fileLength;
        if (!Linux || _unavailable || file.IsInvalid || file.IsClosed) return unknown;
        bool added = false;
        try
        {
            file.DangerousAddRef(ref added);
            long r = LSeek((int)file.DangerousGetHandle(), offset, whence);
            if (r >= 0) return Math.Min(r, fileLength);
            return Marshal.GetLastPInvokeError() == Enxio ? fileLength : unknown;
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException) { _unavailable = true; return unknown; }
        finally { if (added) file.DangerousRelease(); }
    }
}
