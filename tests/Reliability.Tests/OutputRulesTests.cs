using System.Diagnostics;
using Mtp.SafeTensors;
using Mtp.Tests.Shared;

namespace Mtp.Reliability.Tests;

/// <summary>
/// The output transaction's rules, through the commands that write a checkpoint (convert, synth, train --out): --force
/// replaces only a previous checkpoint output holding nothing else (--force-any anything), the planned size must fit in
/// the free space (--no-space-check skips that), and each command removes the OUT.partial-PID temporaries of dead processes.
/// </summary>
public class OutputRulesTests
{
    static string Fixture => Path.Combine(RepoPaths.Fixtures, "deepseek-v3");

    static string Convert(string work, string name = "native")
    {
        string native = Path.Combine(work, name);
        var (code, _, err) = CliRunner.Run("convert", Fixture, native, "--to", "native", "--json");
        Assert.That(code, Is.EqualTo(0), err);
        return native;
    }

    [Test]
    public void ForceReplacesOnlyAPreviousOutputAndNamesWhatItWouldDelete()
    {
        string work = RepoPaths.NewTempDir("force-rule");
        try
        {
            string output = Convert(work, "out");
            File.WriteAllText(Path.Combine(output, "notes.txt"), "mine");
            Directory.CreateDirectory(Path.Combine(output, "sub"));
            string[] args = { "convert", Fixture, output, "--to", "native" };

            var (code, _, err) = CliRunner.Run(args.Append("--force").ToArray());
            Assert.That(code, Is.EqualTo(2), err);
            Assert.That(err, Does.Contain("notes.txt").And.Contain("--force-any"));
            Assert.That(err.Trim().Split('\n'), Has.Length.EqualTo(1));
            Assert.That(File.ReadAllText(Path.Combine(output, "notes.txt")), Is.EqualTo("mine"));
            Assert.That(Directory.Exists(Path.Combine(output, "sub")) && File.Exists(Path.Combine(output, "conversion.json")), Is.True);

            File.Delete(Path.Combine(output, "notes.txt"));
            (code, _, err) = CliRunner.Run(args.Append("--force").ToArray());
            Assert.That(code, Is.EqualTo(2), "sub/ alone is foreign too");
            Assert.That(err, Does.Contain("'sub/'"));

            (code, _, err) = CliRunner.Run(args.Append("--force-any").ToArray());
            Assert.That(code, Is.EqualTo(0), err);
            Assert.That(Directory.Exists(Path.Combine(output, "sub")), Is.False);
            (code, _, err) = CliRunner.Run(args.Append("--force").ToArray());
            Assert.That(code, Is.EqualTo(0), "a pure previous output is replaced: " + err);

            // A folder that is no checkpoint output at all is refused even with --force, naming a file in it.
            string other = Path.Combine(work, "other");
            Directory.CreateDirectory(other);
            File.WriteAllText(Path.Combine(other, "keep.txt"), "x");
            (code, _, err) = CliRunner.Run("synth", "--family", "deepseek-v3", "--force", other);
            Assert.That(code, Is.EqualTo(2), err);
            Assert.That(err, Does.Contain("not a previous checkpoint output").And.Contain("keep.txt"));
            Assert.That(Directory.GetFileSystemEntries(other).Select(Path.GetFileName), Is.EqualTo(new[] { "keep.txt" }));
            Assert.That(Directory.GetDirectories(work).Select(Path.GetFileName), Is.EquivalentTo(new[] { "out", "other" }), "no temporary left");
        }
        finally { Directory.Delete(work, true); }
    }

    [Test]
    public void TrainOutNeedsForceLikeConvertAndSynthAndChecksBeforeTraining()
    {
        string work = RepoPaths.NewTempDir("train-force");
        try
        {
            string native = Convert(work);
            string output = Path.Combine(work, "trained");
            Directory.CreateDirectory(output);
            File.WriteAllText(Path.Combine(output, "x.txt"), "mine");
            var (code, stdout, err) = CliRunner.Run("train", native, "--steps", "1", "--out", output);
            Assert.That(code, Is.EqualTo(2), err);
            Assert.That(err, Does.Contain(output).And.Contain("--force"));
            Assert.That(stdout, Does.Not.Contain("step 1/"), "refused before training");
            Assert.That(File.ReadAllText(Path.Combine(output, "x.txt")), Is.EqualTo("mine"));

            string saved = Path.Combine(work, "saved");
            (code, _, err) = CliRunner.Run("train", native, "--steps", "1", "--out", saved);
            Assert.That(code, Is.EqualTo(0), err);
            (code, _, err) = CliRunner.Run("train", native, "--steps", "1", "--out", saved);
            Assert.That(code, Is.EqualTo(2), "an existing output needs --force: " + err);
            // The horizon leaves room for the resume below (a run past its horizon is refused).
            (code, _, err) = CliRunner.Run("train", native, "--steps", "1", "--total-steps", "2", "--out", saved, "--force");
            Assert.That(code, Is.EqualTo(0), err);
            (code, _, err) = CliRunner.Run("train", saved, "--resume", saved, "--steps", "1", "--out", saved);
            Assert.That(code, Is.EqualTo(0), "continuing the run into its own directory needs no --force: " + err);
            Assert.That(Directory.GetDirectories(work).Select(Path.GetFileName), Is.EquivalentTo(new[] { "native", "trained", "saved" }));
        }
        finally { Directory.Delete(work, true); }
    }

    [Test]
    public void EveryWritingCommandRemovesTheTemporariesOfDeadProcesses()
    {
        string work = RepoPaths.NewTempDir("stale");
        try
        {
            string native = Convert(work);
            foreach (var (name, args) in new[]
            {
                ("synth-out", new[] { "synth", "--family", "deepseek-v3", Path.Combine(work, "synth-out") }),
                ("train-out", new[] { "train", native, "--steps", "1", "--out", Path.Combine(work, "train-out") }),
                ("convert-out", new[] { "convert", Fixture, Path.Combine(work, "convert-out"), "--to", "native" }),
            })
            {
                string stale = Path.Combine(work, name + OutputFolder.PartialSuffix + int.MaxValue); // no such process
                Directory.CreateDirectory(stale);
                File.WriteAllText(Path.Combine(stale, "model.safetensors.partial-" + int.MaxValue), "half");
                var (code, _, err) = CliRunner.Run(args);
                Assert.That(code, Is.EqualTo(0), $"{name}: {err}");
                Assert.That(Directory.Exists(stale), Is.False, $"{name}: the dead process's temporary is removed");
            }
            Assert.That(Directory.GetDirectories(work).Select(Path.GetFileName), Is.EquivalentTo(new[] { "native", "synth-out", "train-out", "convert-out" }));
        }
        finally { Directory.Delete(work, true); }
    }

    [Test]
    public void TransactionRefusesAnOutputLargerThanTheFreeSpaceNamingBothNumbers()
    {
        string work = RepoPaths.NewTempDir("space-unit");
        try
        {
            string output = Path.Combine(work, "out");
            long planned = OutputFolder.FreeBytes(work) + (1L << 40);
            var e = Assert.Throws<OutputException>(() => OutputTransaction.Begin(output, planned, new OutputRules()))!;
            Assert.That(e.Kind, Is.EqualTo(OutputErrorKind.NoSpace));
            Assert.That(Mtp.Cli.ErrorCategories.ExitCode(e.Kind), Is.EqualTo(5));
            Assert.That(e.Message, Does.Contain(planned.ToString("N0", System.Globalization.CultureInfo.InvariantCulture)).And.Contain(work));
            Assert.That(e.Message, Does.Not.Contain("--"), "the library names no flags");
            Assert.That(Mtp.Cli.ErrorCategories.MessageOf(e), Does.EndWith(" (use --no-space-check to try anyway)"), "the CLI adds the flag");
            using (var t = OutputTransaction.Begin(output, planned, new OutputRules { SkipSpaceCheck = true }))
                Assert.That(Directory.Exists(t.Directory), Is.True);
            Assert.That(Directory.GetFileSystemEntries(work), Is.Empty, "a transaction disposed uncommitted removes its temporary");
        }
        finally { Directory.Delete(work, true); }
    }

    /// <summary>
    /// Convert, synth and train --out into a 64 KB tmpfs: refused up front with exit 5, nothing written; with the check
    /// skipped the disk-full failure leaves nothing either, and no file open (the tmpfs unmounts).
    /// </summary>
    [Test]
    public void CommandsRefuseAnOutputThatDoesNotFitBeforeWriting()
    {
        string work = RepoPaths.NewTempDir("space");
        string mount = Path.Combine(work, "small");
        Directory.CreateDirectory(mount);
        var (rc, why) = Sh("mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", mount);
        try
        {
            if (rc != 0) Assert.Ignore($"cannot mount a small tmpfs here (needs root): {why}");
            string native = Convert(work);
            foreach (var args in new[]
            {
                new[] { "convert", Fixture, Path.Combine(mount, "out"), "--to", "native" },
                new[] { "synth", "--family", "deepseek-v3", Path.Combine(mount, "out") },
                new[] { "train", native, "--steps", "1", "--out", Path.Combine(mount, "out") },
            })
            {
                var (code, stdout, err) = CliRunner.Run(args);
                Assert.That(code, Is.EqualTo(5), $"{args[0]}: {err}");
                Assert.That(err, Does.Contain(Path.Combine(mount, "out") + ": needs").And.Contain("free").And.Contain(mount).And.Contain("--no-space-check"), args[0]);
                Assert.That(stdout, Does.Not.Contain("step 1/"), "train is refused before training");
                Assert.That(Directory.GetFileSystemEntries(mount), Is.Empty, $"{args[0]} wrote nothing");
            }
            // Skipping the check: the writes themselves fail (disk full), still exit 5 and still nothing left.
            var (c2, _, e2) = CliRunner.Run("convert", Fixture, Path.Combine(mount, "out"), "--to", "native", "--no-space-check");
            Assert.That(c2, Is.EqualTo(5), e2);
            Assert.That(e2, Does.Not.Contain("--no-space-check"));
            Assert.That(Directory.GetFileSystemEntries(mount), Is.Empty);
        }
        finally
        {
            try
            {
                if (rc == 0)
                {
                    var (u, uw) = Sh("umount", mount);
                    if (u != 0) Sh("umount", "-l", mount); // never leave the mount behind
                    Assert.That(u, Is.EqualTo(0), $"the tmpfs is still busy (a file left open in it?): {uw}");
                }
            }
            finally { Directory.Delete(work, true); }
        }
    }

    static (int, string) Sh(string file, params string[] args)
    {
        var psi = new ProcessStartInfo(file) { RedirectStandardError = true, RedirectStandardOutput = true, UseShellExecute = false };
        foreach (string a in args) psi.ArgumentList.Add(a);
        try
        {
            using var p = Process.Start(psi)!;
            string err = p.StandardError.ReadToEnd();
            p.WaitForExit();
            return (p.ExitCode, err.Trim());
        }
        catch (System.ComponentModel.Win32Exception e) { return (-1, e.Message); }
    }
}
