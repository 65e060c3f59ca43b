// MSBuild task: marks one ELF version need as weak in every libLibTorchSharp.so under a directory, when
// the host's libstdc++ does not define that version. See ../TorchSharpGlibcxxFix.targets for why.
using System;
using System.IO;
using System.Text;
using Microsoft.Build.Framework;
using Microsoft.Build.Utilities;

namespace Mtp.BuildTasks;

/// <summary>Sets VER_FLG_WEAK on a GLIBCXX version need of TorchSharp's native library in a directory.</summary>
public sealed class MtpWeakenGlibcxxNeed : Task
{
    /// <summary>Output or publish directory, searched recursively for libLibTorchSharp.so.</summary>
    [Required] public string Directory { get; set; } = "";

    /// <summary>The version need to weaken, e.g. GLIBCXX_3.4.32.</summary>
    [Required] public string VersionName { get; set; } = "";

    const string LibraryName = "libLibTorchSharp.so";
    const uint ShtGnuVerneed = 0x6ffffffe;
    const ushort VerFlgWeak = 0x2;

    static readonly string[] LibStdCxxCandidates =
    {
        "/usr/lib/x86_64-linux-gnu/libstdc++.so.6", "/usr/lib/aarch64-linux-gnu/libstdc++.so.6",
        "/usr/lib64/libstdc++.so.6", "/usr/lib/libstdc++.so.6", "/lib/x86_64-linux-gnu/libstdc++.so.6",
    };

    // The host does not change during a build, and MSBuild nodes live across builds: look once per process.
    static readonly System.Collections.Concurrent.ConcurrentDictionary<string, bool> HostDefinesCache = new();

    /// <inheritdoc />
    public override bool Execute()
    {
        if (!System.IO.Directory.Exists(Directory)) return true;
        string[] libs = System.IO.Directory.GetFiles(Directory, LibraryName, SearchOption.AllDirectories);
        if (libs.Length == 0) return true;
        if (HostDefinesCache.GetOrAdd(VersionName, HostDefines))
        {
            Log.LogMessage(MessageImportance.Low, "host libstdc++ defines " + VersionName + "; TorchSharp needs no fix");
            return true;
        }
        foreach (string lib in libs)
        {
            try
            {
                // Checked on content at every build (a few milliseconds): a copy step that put the unpatched
                // file back is always noticed, whatever its timestamp.
                byte[] bytes = File.ReadAllBytes(lib);
                if (Weaken(bytes, VersionName) == 0) continue;
                // Write a fresh file and move it over, so a hard link into the NuGet cache is never written through.
                // The patch keeps the size; keeping the timestamp too makes MSBuild's copy steps (which skip a file
                // of equal size and time) leave the patched file alone instead of re-copying the original each build.
                DateTime mtime = File.GetLastWriteTimeUtc(lib);
                string tmp = lib + ".mtp-tmp";
                File.WriteAllBytes(tmp, bytes);
                File.SetLastWriteTimeUtc(tmp, mtime);
                File.Move(tmp, lib, overwrite: true);
                Log.LogMessage(MessageImportance.Normal, "marked " + VersionName + " weak in " + lib);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException or InvalidDataException
                                          or IndexOutOfRangeException or ArgumentException or OverflowException)
            {
                Log.LogError("could not patch " + lib + ": " + e.Message);
                return false;
            }
        }
        return true;
    }

    static bool HostDefines(string version)
    {
        byte[] needle = Encoding.ASCII.GetBytes(version + "\0");
        foreach (string path in LibStdCxxCandidates)
        {
            if (!File.Exists(path)) continue;
            return File.ReadAllBytes(path).AsSpan().IndexOf(needle) >= 0;
        }
        return false; // no libstdc++ found where expected: patching is harmless (the need only becomes weak).
    }

    /// <summary>Sets VER_FLG_WEAK on every Vernaux entry named <paramref name="version"/>; returns how many changed.</summary>
    static int Weaken(byte[] b, string version)
    {
        if (b.Length < 64 || b[0] != 0x7f || b[1] != (byte)'E' || b[2] != (byte)'L' || b[3] != (byte)'F')
            throw new InvalidDataException("not an ELF file");
        if (b[4] != 2 || b[5] != 1) throw new InvalidDataException("only little-endian ELF64 is handled");
        ulong shoff = BitConverter.ToUInt64(b, 0x28);
        int shentsize = BitConverter.ToUInt16(b, 0x3A);
        int shnum = BitConverter.ToUInt16(b, 0x3C);
        int changed = 0;
        for (int s = 0; s < shnum; s++)
        {
            int sh = checked((int)shoff + s * shentsize);
            if (BitConverter.ToUInt32(b, sh + 4) != ShtGnuVerneed) continue;
            int off = checked((int)BitConverter.ToUInt64(b, sh + 0x18));
            int link = (int)BitConverter.ToUInt32(b, sh + 0x28);
            int strSh = checked((int)shoff + link * shentsize);
            int strOff = checked((int)BitConverter.ToUInt64(b, strSh + 0x18));
            int vn = off;
            while (true)
            {
                int cnt = BitConverter.ToUInt16(b, vn + 2);
                int aux = vn + (int)BitConverter.ToUInt32(b, vn + 8);
                for (int a = 0; a < cnt; a++)
                {
                    int nameOff = strOff + (int)BitConverter.ToUInt32(b, aux + 8);
                    int end = Array.IndexOf(b, (byte)0, nameOff);
                    string name = Encoding.ASCII.GetString(b, nameOff, end - nameOff);
                    ushort flags = BitConverter.ToUInt16(b, aux + 4);
                    if (name == version && (flags & VerFlgWeak) == 0)
                    {
                        flags |= VerFlgWeak;
                        b[aux + 4] = (byte)(flags & 0xff);
                        b[aux + 5] = (byte)(flags >> 8);
                        changed++;
                    }
                    uint next = BitConverter.ToUInt32(b, aux + 12);
                    if (next == 0) break;
                    aux += (int)next;
                }
                uint vnNext = BitConverter.ToUInt32(b, vn + 12);
                if (vnNext == 0) break;
                vn += (int)vnNext;
            }
        }
        return changed;
    }
}
