using System.Diagnostics;
using System.Runtime.InteropServices;
using Mtp.Adapters;
using Mtp.SafeTensors;
using Mtp.Tests.Shared;

namespace Mtp.Reliability.Tests;

/// <summary>
/// A conversion killed with SIGKILL part-way (child process, once its OUT.partial-PID directory appears) leaves nothing
/// at OUT, only the named temporary; the next run into OUT succeeds and removes that temporary; the input is untouched.
/// SIGINT / SIGTERM during convert, synth and train --out stop the child cleanly: exit 130 / 143, one line naming the
/// removed OUT.partial-PID, nothing left.
/// </summary>
public class InterruptionTests
{
    [Test]
    public void KilledConversionLeavesNoFinishedOutputAndRerunSucceeds()
    {
        string work = RepoPaths.NewTempDir("interrupt");
        try
        {
            string input = BigInput(work);
            var before = Directory.GetFiles(input).ToDictionary(f => f, f => (new FileInfo(f).Length, File.GetLastWriteTimeUtc(f)));
            string output = Path.Combine(work, "out");
            string[] args = { "convert", input, output, "--to", "native", "--allow-unknown", "--max-shard-size", "16MB", "--threads", "1" };

            using var p = StartMtp(args);
            string partial = output + OutputFolder.PartialSuffix + p.Id;
            var sw = Stopwatch.StartNew();
            // Wait until the temporary holds a finished shard, so the kill lands mid-conversion.
            while (!p.HasExited && sw.Elapsed < TimeSpan.FromSeconds(60)
                   && !(Directory.Exists(partial) && Directory.GetFiles(partial, "*.safetensors").Length > 0))
                Thread.Sleep(5);
            Assert.That(p.HasExited, Is.False, "the conversion finished before it could be killed: make the input bigger");
            p.Kill(entireProcessTree: true);
            p.WaitForExit();
            TestContext.Out.WriteLine($"killed after {sw.Elapsed.TotalSeconds:F2} s; temporary holds {Directory.GetFiles(partial).Length} file(s)");

            Assert.That(Directory.Exists(output), Is.False, "a killed run must not leave OUT");
            Assert.That(File.Exists(Path.Combine(output, "config.json")) || File.Exists(Path.Combine(output, ShardIndex.FileName)), Is.False);
            Assert.That(Directory.Exists(partial), Is.True, "the leftover is OUT.partial-PID");

            var (code, _, err) = CliRunner.Run(args.Append("--json").ToArray());
            Assert.That(code, Is.EqualTo(0), err);
            Assert.That(Directory.Exists(partial), Is.False, "the re-run removes the killed run's temporary");
            Assert.That(Directory.GetDirectories(work).Select(Path.GetFileName), Is.EquivalentTo(new[] { "in", "out" }));
            using (var ck = Checkpoint.Open(output))
                Assert.That(ck.Tensors.Count(t => t.Name.StartsWith("extra.blob", StringComparison.Ordinal)), Is.EqualTo(BlobCount));
            foreach (var (f, info) in before)
                Assert.That((new FileInfo(f).Length, File.GetLastWriteTimeUtc(f)), Is.EqualTo(info), $"input {f} changed");
        }
        finally { Directory.Delete(work, true); }
    }

    const int SigInt = 2, SigTerm = 15, BlobCount = 40;

    [DllImport("libc", EntryPoint = "kill", SetLastError = true)]
    static extern int Kill(int pid, int signal);

    /// <summary>The small Qwen3.5 fixture plus ~320 MB of BF16 tensors no rule claims (carried through with --allow-unknown).</summary>
    static string BigInput(string work)
    {
        string input = Path.Combine(work, "in");
        Corpus.CopyDir(Path.Combine(RepoPaths.Fixtures, "qwen3.5-moe"), input);
        File.Delete(Path.Combine(input, ShardIndex.FileName));
        const int elems = 4 << 20; // 8 MB each
        var specs = Enumerable.Range(0, BlobCount).Select(i => new TensorSpec($"extra.blob{i:D2}", DType.BF16, new long[] { elems })).ToList();
        using var w = SafeTensorsWriter.Create(Path.Combine(input, "zz-extra.safetensors"), specs);
        var chunk = new byte[1 << 20];
        new Random(1).NextBytes(chunk);
        for (long left = (long)BlobCount * elems * 2; left > 0; left -= chunk.Length) w.Append(chunk);
        w.Complete();
        return input;
    }

    /// <summary>Starts the mtp command line as a child process (its output collected into <paramref name="err"/> when given).</summary>
    static Process StartMtp(string[] args, System.Text.StringBuilder? err = null)
    {
        var psi = new ProcessStartInfo("dotnet") { RedirectStandardError = true, RedirectStandardOutput = true, UseShellExecute = false };
        psi.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "mtp.dll"));
        foreach (string a in args) psi.ArgumentList.Add(a);
        var p = Process.Start(psi)!;
        p.OutputDataReceived += (_, _) => { };
        p.ErrorDataReceived += (_, e) => { if (e.Data != null && err != null) lock (err) err.AppendLine(e.Data); };
        p.BeginOutputReadLine();
        p.BeginErrorReadLine();
        return p;
    }

    /// <summary>
    /// Runs <paramref name="args"/> as a child, sends <paramref name="signal"/> once <paramref name="ready"/> holds (the
    /// command is writing into OUT.partial-PID), and checks the clean stop: the exit code, the one line naming the removed
    /// temporary, and no OUT and no temporary left beside it.
    /// </summary>
    static void SignalledRunCleansUp(string[] args, string output, int signal, Func<string, bool> ready)
    {
        if (signal == SigInt) InheritedSignals.RequireSigInt();
        var err = new System.Text.StringBuilder();
        using var p = StartMtp(args, err);
        string partial = output + OutputFolder.PartialSuffix + p.Id;
        var sw = Stopwatch.StartNew();
        while (!p.HasExited && sw.Elapsed < TimeSpan.FromSeconds(120) && !ready(partial)) Thread.Sleep(5);
        Assert.That(p.HasExited, Is.False, $"the command ended before it could be signalled: make it longer. stderr: {err}");
        Assert.That(Kill(p.Id, signal), Is.EqualTo(0));
        Assert.That(p.WaitForExit(60_000), Is.True, "the signalled command did not stop within 60 s");
        p.WaitForExit();
        TestContext.Out.WriteLine($"signal {signal} after {sw.Elapsed.TotalSeconds:F2} s; exit {p.ExitCode}; stderr tail: {err.ToString().TrimEnd().Split('\n')[^1]}");
        Assert.That(p.ExitCode, Is.EqualTo(128 + signal), err.ToString());
        Assert.That(err.ToString(), Does.Contain($"mtp: interrupted, removed {partial}"));
        Assert.That(Directory.Exists(partial), Is.False, "the temporary is removed");
        Assert.That(Directory.Exists(output), Is.False, "an interrupted run leaves no OUT");
        string name = Path.GetFileName(output);
        Assert.That(Directory.GetFileSystemEntries(Path.GetDirectoryName(output)!).Select(Path.GetFileName).Where(n => n!.StartsWith(name, StringComparison.Ordinal)), Is.Empty,
            "nothing named after OUT is left");
    }

    static bool HoldsShard(string dir) => Directory.Exists(dir) && Directory.EnumerateFiles(dir, "*.safetensors").Any();

    [TestCase(SigInt)]
    [TestCase(SigTerm)]
    public void SignalledConversionRemovesItsTemporaryAndExits128PlusSignal(int signal)
    {
        string work = RepoPaths.NewTempDir("sig-convert");
        try
        {
            string input = BigInput(work), output = Path.Combine(work, "out");
            SignalledRunCleansUp(new[] { "convert", input, output, "--to", "native", "--allow-unknown", "--max-shard-size", "16MB", "--threads", "1" },
                output, signal, HoldsShard);
        }
        finally { Directory.Delete(work, true); }
    }

    [Test]
    public void InterruptedSynthRemovesItsTemporaryAndExits130()
    {
        string work = RepoPaths.NewTempDir("sig-synth");
        try
        {
            string output = Path.Combine(work, "D");
            // A shard being written (its NAME.partial-PID file) inside D.partial-PID: the writer is mid-stream.
            SignalledRunCleansUp(new[] { "synth", "--family", "deepseek-v4", "--size", "1GB", "--max-shard-size", "64MB", output }, output, SigInt,
                d => Directory.Exists(d) && Directory.EnumerateFiles(d).Any());
        }
        finally { Directory.Delete(work, true); }
    }

    [Test]
    public void InterruptedTrainingRemovesItsOutputTemporaryAndExits130()
    {
        string work = RepoPaths.NewTempDir("sig-train");
        try
        {
            string native = Path.Combine(work, "native"), output = Path.Combine(work, "trained");
            var (code, _, cerr) = CliRunner.Run("convert", Path.Combine(RepoPaths.Fixtures, "deepseek-v3"), native, "--to", "native", "--json");
            Assert.That(code, Is.EqualTo(0), cerr);
            // train --out creates DIR.partial-PID before its first step; signal once training runs (a few seconds in).
            var started = Stopwatch.StartNew();
            SignalledRunCleansUp(new[] { "train", native, "--steps", "1000000", "--out", output }, output, SigInt,
                d => Directory.Exists(d) && started.Elapsed > TimeSpan.FromSeconds(4));
            Assert.That(Directory.GetDirectories(work).Select(Path.GetFileName), Is.EqualTo(new[] { "native" }));
        }
        finally { Directory.Delete(work, true); }
    }

    [Test]
    public void StaleTemporaryOfALiveProcessIsKept()
    {
        string work = RepoPaths.NewTempDir("leftovers");
        try
        {
            string output = Path.Combine(work, "out");
            string mine = output + OutputFolder.PartialSuffix + Environment.ProcessId;
            string dead = output + OutputFolder.PartialSuffix + int.MaxValue;
            string other = Path.Combine(work, "other.partial-" + int.MaxValue);
            foreach (string d in new[] { mine, dead, other }) Directory.CreateDirectory(d);
            var removed = OutputFolder.RemoveStale(output);
            Assert.That(removed, Is.EqualTo(new[] { dead }));
            Assert.That(Directory.Exists(mine) && Directory.Exists(other), Is.True);
        }
        finally { Directory.Delete(work, true); }
    }
}
