using System.Globalization;
using Mtp.Model;
using TorchSharp;

namespace Mtp.Cli.Commands;

/// <summary>The run flags typed on the command line (null: left out, so the default or the saved value applies).</summary>
/// <param name="Lr">--lr.</param>
/// <param name="Batch">--batch.</param>
/// <param name="SeqLen">--seq-len.</param>
/// <param name="Data">--data.</param>
/// <param name="Seed">--seed.</param>
/// <param name="MtpLossScale">--mtp-loss-scale.</param>
/// <param name="Warmup">--warmup.</param>
/// <param name="TotalSteps">--total-steps.</param>
/// <param name="DType">--dtype.</param>
/// <param name="Train">--train (all or mtp).</param>
public sealed record TrainFlags(double? Lr, int? Batch, int? SeqLen, string? Data, long? Seed, double? MtpLossScale, int? Warmup, int? TotalSteps,
    string? DType, string? Train = null);

/// <summary>
/// <c>mtp train --resume</c>: the saved run decides its options, so a flag that disagrees with them is refused rather than
/// dropped; only the schedule's horizon may be changed (<c>--total-steps</c>), and no run may step past its horizon.
/// </summary>
public static class TrainResume
{
    static readonly CultureInfo Inv = CultureInfo.InvariantCulture;

    /// <summary>Checks <paramref name="ckpt"/> and <paramref name="given"/> against the run saved in <paramref name="dir"/>, then resumes it.</summary>
    public static Trainer Resume(string ckpt, string dir, torch.Device device, TrainFlags given, int steps)
    {
        if (!TrainingCheckpoint.HasState(dir))
            throw new CliException(ExitCodes.Usage, $"--resume {dir}: no {TrainingCheckpoint.StateDir}/trainer_state.json there (write it with --out)", dir);
        var saved = TrainingCheckpoint.ReadRun(dir);
        string full = Full(ckpt);
        if (full != Full(dir) && full != saved.StartCheckpoint)
            throw new CliException(ExitCodes.Usage, $"{ckpt}: a resumed run continues from the weights in --resume {dir}, and this is neither that folder nor the " +
                $"checkpoint the run started from ({saved.StartCheckpoint ?? "not recorded"}); pass {dir} as the checkpoint", ckpt);
        var conflicts = Conflicts(saved, given).ToList();
        if (conflicts.Count > 0)
            throw new CliException(ExitCodes.Usage, $"--resume {dir}: " + string.Join("; ", conflicts) +
                " (a resumed run keeps the options it was saved with; leave these flags out, or start a new run without --resume)");
        CheckData(saved, dir);
        int horizon = given.TotalSteps ?? saved.Options.TotalSteps;
        CheckHorizon(saved.StepsDone, steps, horizon, given.TotalSteps is not null);
        var trainer = TrainingCheckpoint.Resume(dir, device, o => o with { TotalSteps = horizon });
        if (horizon != saved.Options.TotalSteps)
            CliOutput.Current.Warn(string.Format(Inv, "schedule horizon {0} -> {1} (--total-steps): lr at step {2} {3:G4} -> {4:G4}",
                saved.Options.TotalSteps, horizon, saved.StepsDone + 1, saved.Options.LrAt(saved.StepsDone), trainer.Options.LrAt(saved.StepsDone)));
        return trainer;
    }

    /// <summary>
    /// Refuses a run from step <paramref name="done"/> of <paramref name="steps"/> more that passes the schedule's
    /// <paramref name="horizon"/>: its last steps would silently run at the minimum learning rate.
    /// </summary>
    public static void CheckHorizon(long done, int steps, int horizon, bool horizonGiven)
    {
        long end = done + steps;
        if (end <= horizon) return;
        throw new CliException(ExitCodes.Usage, $"--steps {steps} from step {done} ends at step {end}, past the schedule's horizon of {horizon} steps " +
            $"(--total-steps{(done > 0 && !horizonGiven ? " of the saved run" : "")}): the last {end - Math.Max(done, horizon)} step(s) would run at the " +
            $"minimum learning rate; pass --total-steps {end} or more to stretch the schedule, or fewer --steps");
    }

    static IEnumerable<string> Conflicts(TrainingCheckpoint.SavedRun saved, TrainFlags g)
    {
        var o = saved.Options;
        string? c;
        if ((c = Differ("--lr", g.Lr, o.Lr)) != null) yield return c;
        if ((c = Differ("--batch", g.Batch, o.Batch)) != null) yield return c;
        if ((c = Differ("--seq-len", g.SeqLen, o.SeqLen)) != null) yield return c;
        if ((c = Differ("--mtp-loss-scale", g.MtpLossScale, o.MtpLossScale)) != null) yield return c;
        if ((c = Differ("--warmup", g.Warmup, o.Warmup)) != null) yield return c;
        if (g.Train is string train && TrainModeJsonConverter.Parse(train) != o.Train)
            yield return $"--train {train} differs from the saved run's {TrainModeJsonConverter.Name(o.Train)}";
        if (g.Seed is long seed && seed != saved.Seed)
            yield return $"--seed {seed} differs from the saved run's {(saved.Seed is long s ? s.ToString(Inv) : "(not recorded)")}";
        if (g.DType is string dt && !SameDType(dt, saved.DType))
            yield return $"--dtype {dt} differs from the saved run's {saved.DType}";
        if (g.Data is string data)
        {
            string? savedPath = saved.Data["kind"]?.GetValue<string>() == "file" ? saved.Data["path"]?.GetValue<string>() : null;
            if (savedPath == null) yield return $"--data {data} differs from the saved run's synthetic token stream";
            else if (Full(data) != savedPath) yield return $"--data {data} differs from the saved run's {savedPath}";
        }
    }

    static string? Differ<T>(string flag, T? given, T saved) where T : struct, IFormattable =>
        given is T v && !v.Equals(saved) ? $"{flag} {v.ToString(null, Inv)} differs from the saved run's {saved.ToString(null, Inv)}" : null;

    static string? Differ(string flag, bool? given, bool saved) =>
        given is bool v && v != saved ? $"{flag} {v.ToString().ToLowerInvariant()} differs from the saved run's {saved.ToString().ToLowerInvariant()}" : null;

    static bool SameDType(string a, string b)
    {
        try { return CheckpointIO.ParseDType(a) == CheckpointIO.ParseDType(b); }
        catch (ArgumentException) { return false; }
    }

    /// <summary>The saved position is only meaningful in the same bytes: a changed or missing data file is refused.</summary>
    static void CheckData(TrainingCheckpoint.SavedRun saved, string dir)
    {
        if (saved.Data["kind"]?.GetValue<string>() != "file" || saved.Data["path"]?.GetValue<string>() is not string path) return;
        if (!File.Exists(path))
            throw new CliException(ExitCodes.Usage, $"{path}: the data file of the run saved in {dir} is gone (a resumed run reads the same file)", path);
        if (saved.Data["sha256"]?.GetValue<string>() is string sha && FileTokenSource.HashFile(path) is var now && now != sha)
            throw new CliException(ExitCodes.Inconsistent, $"{path}: changed since the run was saved in {dir} (sha256 {now}, saved {sha}): its saved position means nothing now", path);
    }

    static string Full(string p) => Path.GetFullPath(p).TrimEnd('/');
}
