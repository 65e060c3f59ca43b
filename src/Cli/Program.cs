namespace Mtp.Cli;

/// <summary>Entry point of the <c>mtp</c> command.</summary>
public static class Program
{
    /// <summary>Runs the command line.</summary>
    public static int Main(string[] args) => MtpCommandLine.Run(args);
}
