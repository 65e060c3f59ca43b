namespace Mtp.Cli;

/// <summary>Entry point of the <c>mtp</c> command.</summary>
public static class Program
{
    /// <summary>Runs the command line (SIGINT/SIGTERM stop a writing command cleanly: see <see cref="Interrupt"/>).</summary>
    public static int Main(string[] args)
    {
        using var signals = Interrupt.Install();
        return MtpCommandLine.Run(args);
    }
}
