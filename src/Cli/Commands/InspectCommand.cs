using System.CommandLine;
using Mtp.Cli.Inspect;
using Spectre.Console;

namespace Mtp.Cli.Commands;

/// <summary><c>mtp inspect PATH [--json]</c>: summarise a checkpoint and list its problems.</summary>
public static class InspectCommand
{
    /// <summary>Builds the command.</summary>
    public static Command Create()
    {
        var path = new Argument<string>("path") { Description = "Checkpoint directory or .safetensors file" };
        var json = new Option<bool>("--json") { Description = "Print one JSON object instead of a table" };
        var fullScales = new Option<bool>("--full-scales") { Description = "Check every FP4 group scale for NaN (streamed, bounded memory; 8.9 GB on DeepSeek-V4-Flash) instead of one 4 KiB window of each" };
        var cmd = new Command("inspect", "Summarise a checkpoint: family, dtypes, quantization, MTP depth and placement, expert layout, problems");
        cmd.Arguments.Add(path);
        cmd.Options.Add(json);
        cmd.Options.Add(fullScales);
        cmd.SetAction(r =>
        {
            bool asJson = r.GetValue(json);
            return CommandRunner.Run(() =>
            {
                CheckpointReport report = CheckpointInspector.Inspect(r.GetValue(path)!, r.GetValue(fullScales));
                if (asJson)
                {
                    var j = report.ToJson();
                    if (report.Problems.Count > 0)
                    {
                        var (file, tensor) = CommandRunner.FromMessage(report.Problems[0], null, null);
                        j["error"] = new System.Text.Json.Nodes.JsonObject
                        {
                            ["class"] = ExitCodes.ClassName(report.ProblemExitCode), ["message"] = report.Problems[0], ["file"] = file, ["tensor"] = tensor,
                        };
                    }
                    CliOutput.Document(j);
                }
                else Render(report);
                if (report.Problems.Count > 0)
                {
                    CliOutput.Current.Error(report.Problems[0] + (report.Problems.Count > 1 ? $" (and {Units.Count(report.Problems.Count - 1, "more problem")})" : ""));
                    return report.ProblemExitCode;
                }
                return ExitCodes.Ok;
            }, r.GetValue(GlobalOptions.Verbose), asJson);
        });
        return cmd;
    }

    static void Render(CheckpointReport r)
    {
        var t = new Table().Border(TableBorder.Rounded).AddColumn("").AddColumn(r.Path);
        void Row(string k, string v) => t.AddRow(new Markup($"[bold]{Markup.Escape(k)}[/]"), new Text(v));
        Row("family", r.Family + (r.ModelType is null ? "" : $" (model_type {r.ModelType})"));
        Row("shards", r.ShardCount.ToString());
        Row("tensors", r.TensorCount.ToString("N0"));
        Row("bytes", $"{r.TotalBytes:N0} ({Units.Bytes(r.TotalBytes)})");
        Row("dtypes", string.Join(", ", r.DTypeCounts.Select(kv => $"{kv.Key}: {kv.Value}")));
        Row("quantization", string.Join("\n", r.Quantization));
        Row("layers", r.NumHiddenLayers?.ToString() ?? "?");
        Row("MTP depth", $"{r.MtpDepth} in tensors" + (r.ConfigMtpDepth is int c ? $", {c} in config" : ", none in config"));
        Row("MTP tensors", r.MtpTensorCount + (r.MtpLocations.Count > 0 ? " at " + string.Join(", ", r.MtpLocations) : ""));
        Row("experts", r.ExpertLayout);
        Row("problems", r.Problems.Count == 0 ? "none" : string.Join("\n", r.Problems));
        if (r.Warnings.Count > 0) Row("warnings", string.Join("\n", r.Warnings));
        if (r.ScaleCheck is { } sc && sc.TensorsRead + sc.TensorsSampled > 0)
            Row("scale check", $"{sc.TensorsRead:N0} scale tensors read whole" + (sc.TensorsSampled > 0 ? $", {sc.TensorsSampled:N0} FP4 group scales sampled ({ScaleReader.SampleBytes / 1024} KiB each; --full-scales reads all)" : "") + $": {Units.Bytes(sc.BytesRead)} read");
        CliOutput.Current.Render(t);
    }
}
