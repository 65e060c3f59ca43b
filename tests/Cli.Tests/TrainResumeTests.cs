using System.Text.Json.Nodes;
using Mtp.Tests.Shared;

namespace Mtp.Cli.Tests;

/// <summary>
/// <c>mtp train --resume</c> takes its options from the saved run: a flag that disagrees is refused (naming the flag and
/// both values), not dropped; only --total-steps may change them, and no run steps past its schedule's horizon.
/// </summary>
public class TrainResumeTests
{
    string _dir = "", _native = "", _saved = "", _data = "";

    /// <summary>One saved run shared by the tests (they only read it): 1 of 2 steps on a JSONL file.</summary>
    [OneTimeSetUp]
    public void SaveARun()
    {
        _dir = RepoPaths.NewTempDir("cli-resume");
        _native = Path.Combine(_dir, "native");
        _saved = Path.Combine(_dir, "saved");
        _data = Path.Combine(_dir, "tokens.jsonl");
        File.WriteAllText(_data, "[1, 2, 3, 4, 5, 6, 7, 8, 9, 10]\n[11, 12, 13, 14, 15, 16, 17, 18, 19, 20]\n");
        Ok(CliRunner.Run("convert", Path.Combine(RepoPaths.Fixtures, "deepseek-v3"), _native, "--to", "native"));
        Ok(CliRunner.Run("train", _native, "--steps", "1", "--total-steps", "2", "--data", _data, "--seq-len", "16", "--seed", "5", "--out", _saved));
    }

    [OneTimeTearDown] public void TearDown() => Directory.Delete(_dir, true);

    static void Ok((int Code, string Out, string Err) r) => Assert.That(r.Code, Is.EqualTo(0), r.Err);

    (int Code, string Out, string Err) Resume(params string[] extra) =>
        CliRunner.Run(new[] { "train", _saved, "--resume", _saved }.Concat(extra).ToArray());

    [Test]
    public void ACheckpointArgumentThatDoesNotExistIsAUsageError()
    {
        var r = CliRunner.Run("train", Path.Combine(_dir, "nonexistent"), "--resume", _saved, "--steps", "1");
        Assert.That(r.Code, Is.EqualTo(ExitCodes.Usage), r.Err);
        Assert.That(r.Err, Does.Contain("nonexistent"));
    }

    [Test]
    public void ACheckpointArgumentOfAnotherRunIsAUsageError()
    {
        var r = CliRunner.Run("train", Path.Combine(RepoPaths.Fixtures, "deepseek-v3"), "--resume", _saved, "--steps", "1");
        Assert.That(r.Code, Is.EqualTo(ExitCodes.Usage), r.Err);
        Assert.That(r.Err, Does.Contain("--resume").And.Contain(_native), "names the checkpoint the run started from");
    }

    [TestCase("--lr", "0.5", "0.001")]
    [TestCase("--batch", "4", "2")]
    [TestCase("--seq-len", "32", "16")]
    [TestCase("--mtp-loss-scale", "0.3", "0.1")]
    [TestCase("--warmup", "1", "0")]
    [TestCase("--seed", "6", "5")]
    [TestCase("--dtype", "f32", "bf16")]
    public void AFlagThatDiffersFromTheSavedRunIsRefused(string flag, string value, string saved)
    {
        var r = Resume("--steps", "1", flag, value);
        Assert.That(r.Code, Is.EqualTo(ExitCodes.Usage), r.Err);
        Assert.That(r.Err.Trim().Split('\n'), Has.Length.EqualTo(1), r.Err);
        Assert.That(r.Err, Does.Contain($"{flag} {value} differs from the saved run's {saved}"));
    }

    [Test]
    public void ADifferentDataFileIsRefused()
    {
        string other = Path.Combine(_dir, "other.jsonl");
        File.Copy(_data, other, overwrite: true);
        var r = Resume("--steps", "1", "--data", other);
        Assert.That(r.Code, Is.EqualTo(ExitCodes.Usage), r.Err);
        Assert.That(r.Err, Does.Contain($"--data {other} differs from the saved run's {_data}"));
    }

    /// <summary>
    /// --roll-positions was removed (rolling position ids with the ids changes no loss under RoPE); a state saved while
    /// it existed, with either value, still resumes and takes exactly the step a state without it takes.
    /// </summary>
    [TestCase(false)]
    [TestCase(true)]
    public void AStateSavedWithTheRemovedRollPositionsOptionStillResumes(bool roll)
    {
        string old = Path.Combine(_dir, $"old-roll-{roll}");
        CopyDirectory(_saved, old);
        string statePath = Path.Combine(old, "training_state", "trainer_state.json");
        var state = JsonNode.Parse(File.ReadAllText(statePath))!.AsObject();
        state["options"]!.AsObject()["RollPositions"] = roll;
        File.WriteAllText(statePath, state.ToJsonString());

        var fromOld = CliRunner.Run("train", old, "--resume", old, "--steps", "1", "--json");
        var fromNew = Resume("--steps", "1", "--json");
        Ok(fromOld);
        Ok(fromNew);
        JsonNode Step(string output) => JsonNode.Parse(output.Trim())!["steps"]![0]!;
        Assert.That(Step(fromOld.Out)["step"]!.GetValue<long>(), Is.EqualTo(2));
        Assert.That(Step(fromOld.Out)["loss"]!.GetValue<double>(), Is.EqualTo(Step(fromNew.Out)["loss"]!.GetValue<double>()));
        Assert.That(Step(fromOld.Out)["grad_norm"]!.GetValue<double>(), Is.EqualTo(Step(fromNew.Out)["grad_norm"]!.GetValue<double>()));
    }

    [Test]
    public void RollPositionsIsNoLongerAnOption()
    {
        foreach (var command in new[] { "train", "eval" })
        {
            var r = CliRunner.Run(command, _saved, "--roll-positions");
            Assert.That(r.Code, Is.EqualTo(ExitCodes.Usage), $"{command}: {r.Err}");
            Assert.That(r.Err, Does.Contain("--roll-positions"), command);
        }
    }

    static void CopyDirectory(string from, string to)
    {
        Directory.CreateDirectory(to);
        foreach (var f in Directory.GetFiles(from)) File.Copy(f, Path.Combine(to, Path.GetFileName(f)), overwrite: true);
        foreach (var d in Directory.GetDirectories(from)) CopyDirectory(d, Path.Combine(to, Path.GetFileName(d)));
    }

    [Test]
    public void FlagsEqualToTheSavedRunAreAccepted()
    {
        var r = Resume("--steps", "1", "--lr", "0.001", "--batch", "2", "--seq-len", "16", "--seed", "5", "--data", _data, "--dtype", "bf16", "--json");
        Ok(r);
        Assert.That(JsonNode.Parse(r.Out.Trim())!["step"]!.GetValue<long>(), Is.EqualTo(2));
    }

    [Test]
    public void ARunPastTheHorizonIsRefusedAndTotalStepsStretchesIt()
    {
        var past = Resume("--steps", "2");
        Assert.That(past.Code, Is.EqualTo(ExitCodes.Usage), past.Err);
        Assert.That(past.Err, Does.Contain("horizon of 2 steps").And.Contain("--total-steps 3"));

        var stretched = Resume("--steps", "2", "--total-steps", "3", "--json");
        Ok(stretched);
        var lrs = JsonNode.Parse(stretched.Out)!["steps"]!.AsArray().Select(l => l!["lr"]!.GetValue<double>()).ToList();
        // Cosine from 1e-3 to 1e-4 over 3 steps: steps 2 and 3 (0-based 1, 2) at progress 1/3 and 2/3.
        double Cos(double p) => 1e-4 + 0.9e-3 * 0.5 * (1 + Math.Cos(Math.PI * p));
        Assert.That(lrs, Is.EqualTo(new[] { Cos(1.0 / 3), Cos(2.0 / 3) }).Within(1e-12));
        Assert.That(stretched.Err, Does.Contain("horizon 2 -> 3"));
    }

    [Test]
    public void AFreshRunPastItsOwnHorizonIsRefused()
    {
        var r = CliRunner.Run("train", _native, "--steps", "3", "--total-steps", "2");
        Assert.That(r.Code, Is.EqualTo(ExitCodes.Usage), r.Err);
        Assert.That(r.Err, Does.Contain("horizon of 2 steps"));
    }

    [Test]
    public void AChangedDataFileIsInconsistent()
    {
        var original = File.ReadAllText(_data);
        try
        {
            File.AppendAllText(_data, "[21, 22, 23]\n");
            var r = Resume("--steps", "1");
            Assert.That(r.Code, Is.EqualTo(ExitCodes.Inconsistent), r.Err);
            Assert.That(r.Err, Does.Contain(_data).And.Contain("changed"));
        }
        finally
        {
            File.WriteAllText(_data, original);
        }
    }
}
