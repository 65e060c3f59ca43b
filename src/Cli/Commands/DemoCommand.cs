using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using System.Text.Json.Nodes;
using Mtp.Adapters;
using Mtp.Cli.Demo;
using Spectre.Console;

namespace Mtp.Cli.Commands;

/// <summary><c>mtp demo</c>: the whole pipeline on a small synthetic checkpoint, in about a minute on a laptop CPU.</summary>
public static class DemoCommand
{
    /// <summary>Builds the command.</summary>
    public static Command Create()
    {
        var family = new Option<string>("--family") { Description = "Family to run (one with a synthetic layout and a model)", DefaultValueFactory = _ => "deepseek-v3" }.SynthFamily("demo");
        var work = new Option<string?>("--work") { Description = "Working directory (default: a new folder under the system temp dir)" };
        var steps = new Option<int>("--steps") { Description = "Training steps", DefaultValueFactory = _ => 30 }.AtLeast(0);
        var keep = new Option<bool>("--keep") { Description = "Keep the default working directory (it is removed at the end unless --keep or --work is given)" };
        var json = new Option<bool>("--json") { Description = "Print the stages as one JSON object on stdout instead of the table" };
        var cmd = new Command("demo", "Synthesize a small checkpoint, inspect it, convert HF -> training layout, train with the MTP loss, export back to HF, and verify the round trips");
        foreach (Option o in new Option[] { family, work, steps, keep, json }) cmd.Options.Add(o);
        cmd.SetAction(r => CommandRunner.Run(() =>
        {
            // --family and --steps are checked while parsing (SynthFamily, AtLeast).
            string f = Families.Normalize(r.GetValue(family)!)!;
            int n = r.GetValue(steps);
            bool asJson = r.GetValue(json);
            string? given = r.GetValue(work);
            string dir = given ?? Path.Combine(Path.GetTempPath(), "mtp-demo-" + DateTime.UtcNow.ToString("yyyyMMdd-HHmmss"));
            bool remove = given is null && !r.GetValue(keep);
            TorchSharp.torch.set_num_threads(1); // tiny model: one thread is faster and reproducible
            var output = CliOutput.Current;
            var sw = Stopwatch.StartNew();
            var pipeline = new DemoPipeline(f, dir, n, output.Info); // the stages' lines are log (stderr); the table is the result
            bool ok;
            try { ok = pipeline.Run(); }
            finally { if (remove) DemoWorkDir.Remove(dir); }
            double seconds = sw.Elapsed.TotalSeconds;
            string? failure = ok ? null : "demo: " + pipeline.Stages.First(s => s.Status == "failed").Detail;
            if (asJson)
            {
                var doc = Json(f, dir, remove, seconds, pipeline.Stages);
                if (failure is not null)
                {
                    // One document: the stages with the error, not a second {"error"} object after them.
                    doc["error"] = new JsonObject { ["class"] = ExitCodes.ClassName(ExitCodes.Inconsistent), ["message"] = failure, ["file"] = null, ["tensor"] = null };
                    CliOutput.Document(doc);
                    output.Error(failure);
                    return ExitCodes.Inconsistent;
                }
                CliOutput.Document(doc);
                return ExitCodes.Ok;
            }
            string where = remove ? $"work dir {dir} removed; --keep keeps it" : $"work dir {dir}";
            var table = new Table().Border(TableBorder.Rounded).Title($"mtp demo: {f} ({seconds.ToString("F1", CultureInfo.InvariantCulture)} s, {Markup.Escape(where)})")
                .AddColumns("stage", "status", "seconds", "result");
            foreach (var s in pipeline.Stages)
            {
                string color = s.Status switch { "ok" => "green", "missing" => "yellow", _ => "red" };
                table.AddRow(new Text(s.Name), new Markup($"[{color}]{s.Status}[/]"), new Text(s.Seconds.ToString("F1", CultureInfo.InvariantCulture)), new Text(s.Detail));
            }
            output.Render(table);
            if (failure is not null) throw new CliException(ExitCodes.Inconsistent, failure);
            return ExitCodes.Ok;
        }, r.GetValue(GlobalOptions.Verbose), r.GetValue(json)));
        return cmd;
    }

    /// <summary>The --json document of a demo run.</summary>
    public static JsonObject Json(string family, string work, bool removed, double seconds, IEnumerable<DemoStage> stages) => new()
    {
        ["ok"] = stages.All(s => s.Status != "failed"),
        ["family"] = family,
        ["work"] = work,
        ["work_removed"] = removed,
        ["seconds"] = Math.Round(seconds, 3),
        ["stages"] = new JsonArray(stages.Select(s => (JsonNode)new JsonObject
        {
            ["name"] = s.Name, ["status"] = s.Status, ["seconds"] = Math.Round(s.Seconds, 3), ["detail"] = s.Detail,
        }).ToArray()),
    };
}
