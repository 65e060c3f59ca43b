namespace Mtp.SafeTensors;

/// <summary>Write-to-temporary-then-rename helpers, so a crash never leaves a complete-looking file.</summary>
public static class AtomicFile
{
    /// <summary>Temporary sibling path used while <paramref name="path"/> is being written.</summary>
    public static string TempPathFor(string path) => path + ".partial-" + Environment.ProcessId;

    /// <summary>Writes text to a temporary file, flushes it to disk, and renames it over <paramref name="path"/>.</summary>
    public static void WriteAllText(string path, string text)
    {
        string tmp = TempPathFor(path);
        try
        {
            using (var fs = new FileStream(tmp, FileMode.Create, FileAccess.Write, FileShare.None))
            using (var w = new StreamWriter(fs))
            {
                w.Write(text);
                w.Flush();
                fs.Flush(flushToDisk: true);
            }
            File.Move(tmp, path, overwrite: true);
        }
        finally
        {
            if (File.Exists(tmp)) File.Delete(tmp);
        }
    }
}
