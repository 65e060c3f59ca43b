namespace Mtp.Cli.Demo;

/// <summary>The demo's default working directory, removed at the end so repeated demos do not fill the temp dir.</summary>
public static class DemoWorkDir
{
    /// <summary>Deletes <paramref name="dir"/> and everything in it; a directory that is already gone is fine.</summary>
    /// <exception cref="CliException">Exit 5 (I/O) when it cannot be removed, naming the directory.</exception>
    public static void Remove(string dir)
    {
        try
        {
            if (Directory.Exists(dir)) Directory.Delete(dir, recursive: true);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new CliException(ExitCodes.Io, $"{dir}: could not remove the demo's work dir: {e.Message}", file: dir);
        }
    }
}
