using System.Text;

namespace Mtp.SafeTensors;

public sealed partial class OutputTransaction
{
    /// <summary>The temporary sibling a single file is written to before the rename: <c>PATH.partial-PID</c>.</summary>
    public static string FileTempPathFor(string path) => path + OutputFolder.PartialSuffix + Environment.ProcessId;

    /// <summary>
    /// Writes one file atomically: <paramref name="write"/> fills a temporary sibling (<c>PATH.partial-PID.RANDOM</c>, unique to
    /// this call, so writers of the same path in several processes or threads never share one), which is flushed to disk
    /// and renamed over <paramref name="path"/>; on failure the temporary is removed and <paramref name="path"/> is untouched.
    /// </summary>
    public static void WriteFile(string path, Action<Stream> write)
    {
        string tmp = FileTempPathFor(path) + "." + Guid.NewGuid().ToString("N")[..12];
        try
        {
            using (var fs = new FileStream(tmp, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 16))
            {
                write(fs);
                fs.Flush(flushToDisk: true);
            }
            File.Move(tmp, path, overwrite: true);
        }
        finally
        {
            if (File.Exists(tmp)) File.Delete(tmp);
        }
    }

    /// <summary>Writes <paramref name="text"/> as UTF-8 (no byte-order mark) atomically (see <see cref="WriteFile"/>).</summary>
    public static void WriteAllText(string path, string text) => WriteFile(path, s => s.Write(Utf8NoBom.GetBytes(text)));

    // What StreamWriter writes by default: no byte-order mark, and an unpaired surrogate is an error, not a '?'.
    static readonly UTF8Encoding Utf8NoBom = new(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: true);
}
