using System.CommandLine;
using System.Text.Json.Nodes;
using Mtp.Cli.Bench;
using Spectre.Console;

namespace Mtp.Cli.Commands;

/// <summary><c>mtp bench kernels</c>: throughput of the quantization kernels against a memory copy.</summary>
public static class BenchCommand
{
    /// <summary>Builds the command group (subcommands are added by other files).</summary>
    public static Command Create()
    {
        var bench = new Command("bench", "Reproducible benchmarks (use a Release build: dotnet run -c Release --project src/Cli -- bench ...)");
        bench.Subcommands.Add(Kernels());
        bench.Subcommands.Add(BenchConvertCommand.Create());
        bench.Subcommands.Add(BenchLoadCommand.Create());
        bench.Subcommands.Add(BenchTrainCommand.Create());
        HelpText.ListSubcommandsWhenNoneGiven(bench);
        return bench;
    }

    static Command Kernels()
    {
        var json = new Option<bool>("--json") { Description = "Print one JSON object" };
        var rows = new Option<int>("--rows") { Description = "Weight rows", DefaultValueFactory = _ => KernelBench.DefaultRows }.AtLeast(1);
        var cols = new Option<int>("--cols") { Description = "Weight columns (multiple of 32 for FP4)", DefaultValueFactory = _ => KernelBench.DefaultCols }.AtLeast(32);
        var threads = new Option<int>("--threads") { Description = "Threads (0 = all cores)", DefaultValueFactory = _ => 0 }.AtLeast(0);
        var seconds = new Option<double>("--seconds") { Description = "Minimum time per kernel", DefaultValueFactory = _ => 1.0 }.AtLeast(0.0);
        var cmd = new Command("kernels", "GB/s of FP8->BF16 (F32 and E8M0 scales), FP4->BF16, BF16->FP8 and a memory copy, on the same buffers");
        foreach (var o in new Option[] { json, rows, cols, threads, seconds }) cmd.Options.Add(o);
        cmd.SetAction(r =>
        {
            bool asJson = r.GetValue(json);
            return CommandRunner.Run(() =>
            {
                int t = r.GetValue(threads);
                if (r.GetValue(rows) <= 0 || r.GetValue(cols) <= 0 || r.GetValue(cols) % 32 != 0 || t < 0)
                    throw new CliException(ExitCodes.Usage, "--rows must be positive, --cols a positive multiple of 32, --threads >= 0");
                var res = KernelBench.Run(r.GetValue(rows), r.GetValue(cols), t == 0 ? Environment.ProcessorCount : t,
                    TimeSpan.FromSeconds(r.GetValue(seconds)));
                if (asJson)
                {
                    var o = new JsonObject
                    {
                        ["fp8_bf16_f32scale_gbps"] = Math.Round(res.Fp8Bf16F32ScaleGbps, 3),
                        ["fp8_bf16_e8m0_gbps"] = Math.Round(res.Fp8Bf16E8M0Gbps, 3),
                        ["fp4_bf16_gbps"] = Math.Round(res.Fp4Bf16Gbps, 3),
                        ["bf16_fp8_gbps"] = Math.Round(res.Bf16Fp8Gbps, 3),
                        ["bf16_fp4_exact_verify_gbps"] = Math.Round(res.Fp4ExactGbps, 3),
                        ["bf16_fp8_exact_verify_gbps"] = Math.Round(res.Fp8ExactGbps, 3),
                        ["memcpy_gbps"] = Math.Round(res.MemcpyGbps, 3),
                        ["threads"] = res.Threads,
                        ["rows"] = res.Rows,
                        ["cols"] = res.Cols,
                    };
                    CliOutput.Document(o);
                    return ExitCodes.Ok;
                }
                var table = new Table().Border(TableBorder.Rounded).AddColumns("kernel", "GB/s", "vs memcpy");
                void Row(string k, double v) => table.AddRow(k, v.ToString("F2"), (v / res.MemcpyGbps).ToString("P0"));
                Row("FP8 -> BF16, F32 scales", res.Fp8Bf16F32ScaleGbps);
                Row("FP8 -> BF16, E8M0 scales", res.Fp8Bf16E8M0Gbps);
                Row("FP4 -> BF16, E8M0 scales", res.Fp4Bf16Gbps);
                Row("BF16 -> FP8 (input GB/s)", res.Bf16Fp8Gbps);
                Row("BF16 -> FP4 exact + check (input GB/s)", res.Fp4ExactGbps);
                Row("BF16 -> FP8 exact + check (input GB/s)", res.Fp8ExactGbps);
                Row("memcpy (output size)", res.MemcpyGbps);
                CliOutput.Current.Render(table);
                CliOutput.Current.Result($"{res.Rows}x{res.Cols}, {res.Threads} threads; GB/s of output bytes (quantization: of input bytes)");
                return ExitCodes.Ok;
            }, r.GetValue(GlobalOptions.Verbose), asJson);
        });
        return cmd;
    }
}
