using System.Globalization;
using System.Text.Json.Nodes;
using Mtp.Model;

namespace Mtp.Cli.Commands;

/// <summary>
/// Runs <c>mtp train</c>'s optimizer steps, printing a line per step (or collecting them for --json) and keeping each
/// step's time for the summary.
/// </summary>
sealed class TrainSteps(Trainer trainer, bool json)
{
    /// <summary>Seconds of every step run so far.</summary>
    public List<double> Times { get; } = [];

    /// <summary>The --json objects of every step run so far.</summary>
    public JsonArray Json { get; } = [];

    /// <summary>Runs <paramref name="steps"/> steps, stopping between two when <paramref name="cancel"/> fires.</summary>
    public void Run(int steps, CancellationToken cancel)
    {
        var inv = CultureInfo.InvariantCulture;
        long end = trainer.StepsDone + steps;
        for (int i = 0; i < steps; i++)
        {
            cancel.ThrowIfCancellationRequested();
            var r = trainer.Step();
            Times.Add(r.Seconds);
            if (json)
            {
                Json.Add(new JsonObject
                {
                    ["step"] = r.Step,
                    ["loss"] = r.Loss,
                    ["mtp_losses"] = new JsonArray(r.MtpLosses.Select(x => (JsonNode)JsonValue.Create(x)!).ToArray()),
                    ["grad_norm"] = r.GradNorm,
                    ["tokens_per_s"] = Math.Round(r.TokensPerSecond, 1),
                    ["total_loss"] = r.TotalLoss,
                    ["lr"] = r.Lr,
                });
            }
            else
            {
                CliOutput.Current.Result(string.Format(inv, "step {0}/{1}  loss {2:F4}  mtp [{3}]  grad_norm {4:F3}  lr {5:G3}  {6:F0} tok/s",
                    r.Step, end, r.Loss, string.Join(", ", r.MtpLosses.Select(x => x.ToString("F4", inv))), r.GradNorm, r.Lr, r.TokensPerSecond));
            }
        }
    }
}
