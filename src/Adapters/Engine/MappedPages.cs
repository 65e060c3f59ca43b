using System.Runtime.InteropServices;

namespace Mtp.Adapters;

/// <summary>Releases pages of the memory-mapped sources once read, so resident memory does not grow with the checkpoint.</summary>
internal static class MappedPages
{
    const int MadvDontNeed = 4;

    [DllImport("libc", EntryPoint = "madvise", SetLastError = true)]
    static extern int Madvise(nint addr, nuint length, int advice);

    /// <summary>
    /// Drops the whole pages of [off, off + len) of a mapped source range from this process's mapping (MADV_DONTNEED: they
    /// are clean and file-backed, so nothing is lost). Best effort, Linux only.
    /// </summary>
    internal static unsafe void Unmap(Src s, long off, long len)
    {
        if (len <= 0 || !OperatingSystem.IsLinux()) return;
        long page = Environment.SystemPageSize;
        long a = (long)s.File.GetData(s.Info).Pointer + s.Offset + off, e = a + len;
        a = (a + page - 1) / page * page;
        e = e / page * page;
        if (e <= a) return;
        try { Madvise((nint)a, (nuint)(e - a), MadvDontNeed); } catch (DllNotFoundException) { } catch (EntryPointNotFoundException) { }
    }
}
