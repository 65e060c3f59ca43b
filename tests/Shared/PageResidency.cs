using System.IO.MemoryMappedFiles;
using System.Runtime.InteropServices;

namespace Mtp.Tests.Shared;

/// <summary>
/// How much of a file sits in the page cache (mincore over a fresh read-only map, which itself faults nothing in), and a
/// way to empty it first (fsync, then POSIX_FADV_DONTNEED), so that a test can count the pages a command pulled in.
/// Linux only: <see cref="Available"/> is false elsewhere.
/// </summary>
public static class PageResidency
{
    [DllImport("libc", SetLastError = true)] static extern int mincore(nint addr, nuint length, byte[] vec);
    [DllImport("libc")] static extern int posix_fadvise(int fd, long offset, long length, int advice);

    /// <summary>Whether mincore and fadvise can be used here.</summary>
    public static bool Available => OperatingSystem.IsLinux();

    /// <summary>Bytes of <paramref name="path"/> resident in the page cache (whole pages).</summary>
    public static long ResidentBytes(string path)
    {
        long length = new FileInfo(path).Length;
        if (length == 0) return 0;
        using var map = MemoryMappedFile.CreateFromFile(path, FileMode.Open, null, 0, MemoryMappedFileAccess.Read);
        using var view = map.CreateViewAccessor(0, 0, MemoryMappedFileAccess.Read);
        long page = Environment.SystemPageSize;
        var vec = new byte[(length + page - 1) / page];
        nint addr = view.SafeMemoryMappedViewHandle.DangerousGetHandle() + (nint)view.PointerOffset;
        if (mincore(addr, (nuint)length, vec) != 0) throw new IOException($"mincore failed on {path}: errno {Marshal.GetLastPInvokeError()}");
        return vec.Count(v => (v & 1) != 0) * page;
    }

    /// <summary>Resident bytes summed over the .safetensors files of <paramref name="dir"/>.</summary>
    public static long ResidentInDir(string dir) => Directory.GetFiles(dir, "*.safetensors").Sum(ResidentBytes);

    /// <summary>Writes <paramref name="dir"/>'s .safetensors files to disk and drops them from the page cache.</summary>
    public static void Evict(string dir)
    {
        foreach (string f in Directory.GetFiles(dir, "*.safetensors"))
        {
            using var fs = new FileStream(f, FileMode.Open, FileAccess.ReadWrite);
            fs.Flush(flushToDisk: true);
            posix_fadvise((int)fs.SafeFileHandle.DangerousGetHandle(), 0, 0, 4 /* DONTNEED */);
        }
    }
}
