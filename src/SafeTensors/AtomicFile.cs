namespace Mtp.SafeTensors;

/// <summary>
/// Single-file atomic writes, forwarding to <see cref="OutputTransaction"/> (the one atomic-output type); kept for the
/// callers that still name it.
/// </summary>
public static class AtomicFile
{
    /// <summary>Temporary sibling path used while <paramref name="path"/> is being written (see <see cref="OutputTransaction.FileTempPathFor"/>).</summary>
    public static string TempPathFor(string path) => OutputTransaction.FileTempPathFor(path);

    /// <summary>Writes text atomically (see <see cref="OutputTransaction.WriteAllText"/>).</summary>
    public static void WriteAllText(string path, string text) => OutputTransaction.WriteAllText(path, text);
}
