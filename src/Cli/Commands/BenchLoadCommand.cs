using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using System.Text.Json.Nodes;
using Mtp.Model;
using TorchSharp;

namespace Mtp.Cli.Commands;

/// <summary>
/// <c>mtp bench load CKPT</c>: time and memory of loading a checkpoint into its model (training layout or HF), against the
/// model's parameter bytes; <c>--staged</c> measures the earlier loader (a managed copy of each tensor) in the same build.
/// </summary>
public static class BenchLoadCommand
{
    /// <summary>Builds the command.</summary>
    public static Command Create()
    {
        var ckpt = new Argument<string>("checkpoint") { Description = "Checkpoint directory (training layout or Hugging Face)." };
        var dtype = new Option<string>("--dtype") { Description = "Model dtype: bf16 or f32.", DefaultValueFactory = _ => "bf16" }.OneOfIgnoringCase("bf16|bfloat16", "f32|fp32|float32");
        var staged = new Option<bool>("--staged") { Description = "Load through managed arrays, as the loader before zero-copy did (the baseline)." };
        var json = new Option<bool>("--json") { Description = "Print one JSON object." };
        var cmd = new Command("load", "Seconds and peak resident memory of loading a checkpoint into its model, against the parameter bytes (run once per loader: peaks are per process)")
        {
            ckpt, dtype, staged, json,
        };
        cmd.SetAction(pr => CommandRunner.Run(() => Run(pr.GetValue(ckpt)!, pr.GetValue(dtype)!, pr.GetValue(staged), pr.GetValue(json)),
            pr.GetValue(GlobalOptions.Verbose), pr.GetValue(json)));
        return cmd;
    }

    static int Run(string dir, string dtypeName, bool staged, bool json)
    {
        if (!Directory.Exists(dir)) throw new CliException(ExitCodes.Usage, $"{dir}: no such directory", dir);
        torch.set_num_threads(1);
        long before = Status("VmRSS");
        TensorFill.ManagedStagingBaseline = staged;
        var sw = Stopwatch.StartNew();
        using var model = MtpModel.Load(dir, torch.CPU, CheckpointIO.ParseDType(dtypeName));
        double seconds = sw.Elapsed.TotalSeconds;
        long paramBytes = model.StateDict().Values.Sum(t => t.numel() * t.ElementSize);
        long peak = Status("VmHWM");
        var inv = CultureInfo.InvariantCulture;
        if (json)
            CliOutput.Document(new JsonObject
            {
                ["loader"] = staged ? "staged" : "direct", ["family"] = model.Family, ["dtype"] = model.DType.ToString(), ["seconds"] = Math.Round(seconds, 3),
                ["parameter_bytes"] = paramBytes, ["rss_before_bytes"] = before, ["peak_rss_bytes"] = peak,
                ["peak_over_parameters"] = Math.Round((double)(peak - before) / paramBytes, 3),
            });
        else
            CliOutput.Current.Result(string.Format(inv, "{0} loader: {1} {2} in {3:F2} s; parameters {4}; peak RSS {5} ({6} before loading): {7:F2}x the parameters above the start",
                staged ? "staged" : "direct", model.Family, model.DType, seconds, Units.Bytes(paramBytes), Units.Bytes(peak), Units.Bytes(before),
                (double)(peak - before) / paramBytes));
        return ExitCodes.Ok;
    }

    // /proc/self/status fields are in kB.
    static long Status(string key)
    {
        if (!File.Exists("/proc/self/status")) return 0;
        foreach (string line in File.ReadLines("/proc/self/status"))
            if (line.StartsWith(key + ":", StringComparison.Ordinal))
                return long.Parse(line[(key.Length + 1)..].Trim().Split(' ')[0], CultureInfo.InvariantCulture) * 1024;
        return 0;
    }
}
