using System.CommandLine;
using Mtp.Cli.Roundtrip;

namespace Mtp.Cli.Commands;

/// <summary>
/// <c>mtp roundtrip HF_DIR</c>: HF -> training layout -> HF with the original as reference, then a byte-level comparison
/// with the original; exit 0 only when every tensor came back byte for byte, 6 otherwise. <c>--part i/n</c> and
/// <c>--merge</c> split it across machines (see <see cref="RoundtripRunner"/>).
/// </summary>
public static class RoundtripCommand
{
    /// <summary>Builds the command.</summary>
    public static Command Create()
    {
        var input = new Argument<string>("hf_dir") { Description = "The Hugging Face checkpoint to check (it is only read)" };
        var work = new Option<string?>("--work") { Description = "Work folder for the intermediates (new or empty; default: a new folder under the system temp dir; shared by all machines with --part)" };
        var keep = new Option<bool>("--keep") { Description = "Keep the intermediates (work/native, work/hf); they are removed at the end otherwise, also on failure" };
        var json = new Option<bool>("--json") { Description = "Print the verdict as one JSON document on stdout (or {\"error\": {...}} on failure)" };
        var junit = new Option<string?>("--junit") { Description = "Also write the verdict as JUnit XML to this file: one test case per tensor group (embeddings, each layer, each MTP depth)" };
        var part = new Option<string?>("--part") { Description = "i/n: this machine's share of a split round trip in the shared --work folder (to native while work/native is incomplete, then back to HF and compare); see --merge" }.PartOf();
        var merge = new Option<bool>("--merge") { Description = "Once all --part runs of a step are done: complete work/native, or (the second time) merge the parts' verdicts" };
        var cmd = new Command("roundtrip", "Convert a Hugging Face checkpoint to the training layout and back (original as reference) and check that every tensor returns byte for byte (exit 0; 6 when not)")
        {
            input, work, keep, json, junit, part, merge,
        };
        cmd.SetAction(pr => CommandRunner.Run(() =>
            {
                string? partText = pr.GetValue(part), junitPath = pr.GetValue(junit), workDir = pr.GetValue(work);
                bool asJson = pr.GetValue(json), split = partText != null || pr.GetValue(merge);
                if (partText != null && pr.GetValue(merge)) throw new CliException(ExitCodes.Usage, "--part and --merge are separate steps: give one of them");
                if (split && workDir == null) throw new CliException(ExitCodes.Usage, $"{(partText != null ? "--part" : "--merge")} needs --work DIR, the folder every machine shares");
                if (partText != null && (junitPath != null || pr.GetValue(keep)))
                    throw new CliException(ExitCodes.Usage, $"{(junitPath != null ? "--junit" : "--keep")} applies to the final --merge (or a whole round trip), not to a --part step");
                var options = new RoundtripOptions
                {
                    Input = pr.GetValue(input)!, Work = workDir, Keep = pr.GetValue(keep),
                    // A merge reads manifests and writes small files atomically; a signal may end it the default way.
                    Cancel = pr.GetValue(merge) ? CancellationToken.None : Interrupt.Token,
                    Log = asJson ? null : line => CliOutput.Current.Info("roundtrip: " + line),
                };
                if (partText != null)
                {
                    RoundtripStep step = RoundtripRunner.RunPart(options, OptionChecks.ParsePart(partText)!.Value);
                    return Report(step, asJson);
                }
                try
                {
                    RoundtripVerdict verdict;
                    string? left, shown;
                    if (split)
                    {
                        var (step, v, l) = RoundtripRunner.Merge(options);
                        if (v == null)
                        {
                            if (junitPath != null) CliOutput.Current.Info($"roundtrip: no verdict yet, so {junitPath} is not written: the merge after the parts have converted back writes it");
                            return Report(step, asJson);
                        }
                        (verdict, left, shown) = (v, l, workDir);
                    }
                    else
                    {
                        var (v, w, l) = RoundtripRunner.RunWhole(options);
                        (verdict, left, shown) = (v, l, w.Root);
                    }
                    if (junitPath != null) JUnitWriter.Save(JUnitWriter.Build(verdict), junitPath);
                    var cli = CliOutput.Current;
                    if (asJson) CliOutput.Document(verdict.ToJson(shown, options.Keep));
                    else foreach (string line in verdict.Lines()) cli.Result(line);
                    if (left != null) cli.Warn($"could not remove the work folder {left}");
                    else cli.Info(options.Keep ? $"roundtrip: intermediates kept in {shown}" : "roundtrip: intermediates removed (--keep keeps them)");
                    return verdict.Identical ? ExitCodes.Ok : ExitCodes.Different;
                }
                catch (Exception e) when (junitPath != null && !(e is CliException c && c.File == junitPath))
                {
                    // CI shows a round trip that could not finish as an errored test, not as a missing report.
                    string cls = e is OperationCanceledException ? "interrupted" : ExitCodes.ClassName(CommandRunner.Classify(e).Code);
                    JUnitWriter.Save(JUnitWriter.Error(options.Input, ErrorCategories.MessageOf(e).Replace('\r', ' ').Replace('\n', ' '), cls), junitPath);
                    throw;
                }
            }, pr.GetValue(GlobalOptions.Verbose), pr.GetValue(json)));
        return cmd;
    }

    static int Report(RoundtripStep step, bool json)
    {
        if (json)
        {
            var o = new System.Text.Json.Nodes.JsonObject { ["ok"] = true, ["stage"] = step.Stage, ["message"] = step.Message };
            if (step.Conversion is { } c) o["conversion"] = ConvertCommand.SummaryJson(c, step.Stage == "to-native" ? "native" : "hf");
            CliOutput.Document(o);
        }
        else CliOutput.Current.Info("roundtrip: " + step.Message);
        return ExitCodes.Ok;
    }
}
