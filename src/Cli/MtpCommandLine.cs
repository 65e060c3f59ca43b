using System.CommandLine;

namespace Mtp.Cli;

/// <summary>Builds the <c>mtp</c> command tree; each command lives in Commands/.</summary>
public static class MtpCommandLine
{
    /// <summary>Parses and runs <paramref name="args"/>; returns the process exit code.</summary>
    public static int Run(string[] args)
    {
        var root = new RootCommand("mtp: convert and train Multi-Token-Prediction checkpoints (DeepSeek-V3/V4, Qwen3.5)");
        root.Subcommands.Add(Commands.TrainCommand.Create());
        return root.Parse(args).Invoke();
    }
}
