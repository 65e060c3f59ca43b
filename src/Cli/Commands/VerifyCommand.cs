using System.CommandLine;
using Mtp.Adapters;

namespace Mtp.Cli.Commands;

/// <summary><c>mtp verify A B</c>: tensor-by-tensor comparison of two checkpoints.</summary>
public static class VerifyCommand
{
    /// <summary>Builds the command.</summary>
    public static Command Create()
    {
        var a = new Argument<string>("a") { Description = "First checkpoint" };
        var b = new Argument<string>("b") { Description = "Second checkpoint" };
        var json = new Option<bool>("--json") { Description = "Print the report as JSON" };
        var tolerance = new Option<double?>("--tolerance") { Description = "Accept differences up to this max abs difference (after dequantization)" }.AtLeast(0.0);
        var cmd = new Command("verify", "Compare two checkpoints: names, dtypes, shapes and bytes (exit 0 only when identical, or within --tolerance; 6 when different)")
        {
            a, b, json, tolerance,
        };
        cmd.SetAction(pr => CommandRunner.Run(() =>
            {
                double? tol = pr.GetValue(tolerance);
                if (tol is double t && (t < 0 || double.IsNaN(t))) throw new AdapterException(AdapterErrorKind.Usage, "--tolerance must be a non-negative number");
                VerifyReport r = Verifier.Compare(pr.GetValue(a)!, pr.GetValue(b)!, tol);
                if (pr.GetValue(json)) CliOutput.Document(r.ToJson());
                else
                {
                    var output = CliOutput.Current;
                    foreach (string n in r.OnlyInA) output.Result($"only in A: {n}");
                    foreach (string n in r.OnlyInB) output.Result($"only in B: {n}");
                    foreach (var d in r.Differences) output.Result($"{(d.WithinTolerance ? "within tolerance" : "differs")}: {d.Name}: {d.Kind}: {d.Detail}");
                    output.Result(r.Identical ? $"identical: {r.Compared} tensors" : r.Passed ? $"within tolerance: {r.Compared} tensors compared" :
                        $"different: {r.Differences.Count(d => !d.WithinTolerance)} tensor(s) differ, {r.OnlyInA.Count} only in A, {r.OnlyInB.Count} only in B ({r.Compared} compared)");
                }
                return r.Passed ? ExitCodes.Ok : ExitCodes.Different;
            }, pr.GetValue(GlobalOptions.Verbose), pr.GetValue(json)));
        return cmd;
    }
}
