using System.CommandLine;

namespace Mtp.Cli;

/// <summary>Help as a user should read it, and the command list for a command line that names no command.</summary>
public static class HelpText
{
    // Where System.CommandLine's rendering misleads: convert's IN and OUT are optional only for the --merge-index form,
    // which the parser must therefore accept, but every conversion needs both; and a group's command is required
    // (see ListSubcommandsWhenNoneGiven), not optional.
    static readonly (string Written, string Meant)[] Fixes =
    {
        ("mtp convert [<in> [<out>]] [options]", "mtp convert <in> <out> --to <native|hf> [options]\n  mtp convert --merge-index <out> [options]"),
        (" [command] [options]", " <command> [options]"),
    };

    /// <summary><paramref name="help"/> as System.CommandLine wrote it, with the usage lines it gets wrong corrected.</summary>
    public static string Polish(string help)
    {
        // The usage lines start with the executable's name, which is not mtp when the command line runs inside another
        // program (a test host): the tool's name is.
        string exe = RootCommand.ExecutableName;
        if (exe != "mtp") help = help.Replace("\n  " + exe + " ", "\n  mtp ", StringComparison.Ordinal);
        foreach (var (written, meant) in Fixes) help = help.Replace(written, meant, StringComparison.Ordinal);
        return help;
    }

    /// <summary>
    /// Makes <paramref name="command"/> (the root, or a group such as bench) answer a command line that names none of its
    /// subcommands with its help, listing them, on stdout, one error line on stderr and exit 2: nothing was done, so a
    /// script that forgot the command fails.
    /// </summary>
    public static void ListSubcommandsWhenNoneGiven(Command command)
    {
        command.SetAction(pr =>
        {
            var path = new List<string>();
            for (var c = pr.CommandResult; c.Parent is System.CommandLine.Parsing.CommandResult parent; c = parent) path.Insert(0, c.Command.Name);
            var help = new StringWriter();
            pr.RootCommandResult.Command.Parse([.. path, "--help"]).Invoke(new InvocationConfiguration { Output = help });
            Console.Out.Write(Polish(help.ToString()));
            string name = string.Join(' ', new[] { "mtp" }.Concat(path));
            string commands = OptionChecks.Alternatives(command.Subcommands.Select(s => s.Name).ToList());
            CliOutput.Current.Error(path.Count == 0 ? $"no command given: {commands} (listed above; {name} COMMAND --help shows its options)"
                : $"{string.Join(' ', path)} needs a command: {commands} (listed above; {name} COMMAND --help shows its options)");
            return ExitCodes.Usage;
        });
    }
}
