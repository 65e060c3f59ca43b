using System.CommandLine;
using System.Diagnostics;
using Mtp.Adapters.Synthetic;
using Mtp.Cli.Demo;
using Spectre.Console;

namespace Mtp.Cli.Commands;

/// <summary><c>mtp demo</c>: the whole pipeline on a small synthetic checkpoint, in about a minute on a laptop CPU.</summary>
public static class DemoCommand
{
    /// <summary>Builds the command.</summary>
    public static Command Create()
    {
        var family = new Option<string>("--family") { Description = "deepseek-v3, deepseek-v4 or qwen3.5", DefaultValueFactory = _ => "deepseek-v3" }.OneOf(SynthModel.Families);
        var work = new Option<string?>("--work") { Description = "Working directory (default: a new folder under the system temp dir)" };
        var steps = new Option<int>("--steps") { Description = "Training steps", DefaultValueFactory = _ => 30 }.AtLeast(0);
        var keep = new Option<bool>("--keep") { Description = "Keep the default working directory (it is removed at the end unless --keep or --work is given)" };
        var cmd = new Command("demo", "Synthesize a small checkpoint, inspect it, convert HF -> training layout, train with the MTP loss, export back to HF, and verify the round trips");
        cmd.Options.Add(family);
        cmd.Options.Add(work);
        cmd.Options.Add(steps);
        cmd.Options.Add(keep);
        cmd.SetAction(r => CommandRunner.Run(() =>
        {
            // --family and --steps are checked while parsing (OneOf, AtLeast).
            string f = r.GetValue(family)!;
            int n = r.GetValue(steps);
            string? given = r.GetValue(work);
            string dir = given ?? Path.Combine(Path.GetTempPath(), "mtp-demo-" + DateTime.UtcNow.ToString("yyyyMMdd-HHmmss"));
            bool remove = given is null && !r.GetValue(keep);
            TorchSharp.torch.set_num_threads(1); // tiny model: one thread is faster and reproducible
            var sw = Stopwatch.StartNew();
            var pipeline = new DemoPipeline(f, dir, n, line => AnsiConsole.MarkupLine("[grey]{0}[/]", Markup.Escape(line)));
            bool ok;
            try { ok = pipeline.Run(); }
            finally { if (remove) DemoWorkDir.Remove(dir); }
            string where = remove ? $"work dir {dir} removed; --keep keeps it" : $"work dir {dir}";
            var table = new Table().Border(TableBorder.Rounded).Title($"mtp demo: {f} ({sw.Elapsed.TotalSeconds:F1} s, {where})")
                .AddColumns("stage", "status", "seconds", "result");
            foreach (var s in pipeline.Stages)
            {
                string color = s.Status switch { "ok" => "green", "missing" => "yellow", _ => "red" };
                table.AddRow(new Text(s.Name), new Markup($"[{color}]{s.Status}[/]"), new Text(s.Seconds.ToString("F1")), new Text(s.Detail));
            }
            AnsiConsole.Write(table);
            if (!ok) throw new CliException(ExitCodes.Inconsistent, "demo: " + pipeline.Stages.First(s => s.Status == "failed").Detail);
            return ExitCodes.Ok;
        }, r.GetValue(GlobalOptions.Verbose), json: false));
        return cmd;
    }
}
