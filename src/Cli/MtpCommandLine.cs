using System.CommandLine;
using Mtp.Cli.Commands;

namespace Mtp.Cli;

/// <summary>Builds the <c>mtp</c> command tree; each command lives in Commands/.</summary>
public static class MtpCommandLine
{
    /// <summary>Parses and runs <paramref name="args"/>; returns the process exit code.</summary>
    public static int Run(string[] args)
    {
        var root = new RootCommand("mtp: convert, train and evaluate Multi-Token-Prediction checkpoints (DeepSeek-V3/V3.2/V4, Qwen3.5/Qwen3-Next, GLM-4.5/GLM-5, MiMo)");
        root.Options.Add(GlobalOptions.Verbose);
        root.Options.Add(GlobalOptions.Quiet);
        HelpText.ListSubcommandsWhenNoneGiven(root);
        root.Subcommands.Add(InspectCommand.Create());
        root.Subcommands.Add(BenchCommand.Create());
        root.Subcommands.Add(ConvertCommand.Create());
        root.Subcommands.Add(VerifyCommand.Create());
        root.Subcommands.Add(TrainCommand.Create());
        root.Subcommands.Add(EvalCommand.Create());
        root.Subcommands.Add(SynthCommand.Create());
        root.Subcommands.Add(DemoCommand.Create());
        root.Subcommands.Add(RoundtripCommand.Create());
        ParseResult parsed = root.Parse(args);
        if (parsed.Errors.Count > 0)
        {
            // One line whatever the parser found, in the project's words (no .NET type names, no multi-line lists).
            string message = string.Join("; ", parsed.Errors.Select(e => OptionChecks.Friendly(e.Message)).Distinct());
            Console.Error.WriteLine("mtp: " + message);
            if (args.Contains("--json"))
            {
                var err = new System.Text.Json.Nodes.JsonObject
                {
                    ["class"] = ExitCodes.ClassName(ExitCodes.Usage), ["message"] = message, ["file"] = null, ["tensor"] = null,
                };
                Console.Out.WriteLine(new System.Text.Json.Nodes.JsonObject { ["error"] = err }.ToJsonString());
            }
            return ExitCodes.Usage;
        }
        using var output = CliOutput.Begin(parsed.GetValue(GlobalOptions.Quiet), parsed.GetValue(GlobalOptions.Verbose));
        // Help is written to a buffer first so that the usage lines the parser gets wrong can be corrected.
        var help = new StringWriter();
        int code = parsed.Invoke(new InvocationConfiguration { Output = help });
        if (help.GetStringBuilder().Length > 0) Console.Out.Write(HelpText.Polish(help.ToString()));
        return code;
    }
}
