using System.Diagnostics;
using Mtp.Adapters;
using Mtp.SafeTensors;
using Mtp.Tests.Shared;

namespace Mtp.Reliability.Tests;

/// <summary>
/// A conversion killed with SIGKILL part-way (child process, once its OUT.partial-PID directory appears) leaves nothing
/// at OUT, only the named temporary; the next run into OUT succeeds and removes that temporary; the input is untouched.
/// </summary>
public class InterruptionTests
{
    [Test]
    public void KilledConversionLeavesNoFinishedOutputAndRerunSucceeds()
    {
        string work = RepoPaths.NewTempDir("interrupt");
        try
        {
            // The small Qwen3.5 fixture plus ~320 MB of BF16 tensors no rule claims (carried through with --allow-unknown).
            string input = Path.Combine(work, "in");
            Corpus.CopyDir(Path.Combine(RepoPaths.Fixtures, "qwen3.5-moe"), input);
            File.Delete(Path.Combine(input, ShardIndex.FileName));
            const int count = 40, elems = 4 << 20; // 40 x 8 MB
            var specs = Enumerable.Range(0, count).Select(i => new TensorSpec($"extra.blob{i:D2}", DType.BF16, new long[] { elems })).ToList();
            using (var w = SafeTensorsWriter.Create(Path.Combine(input, "zz-extra.safetensors"), specs))
            {
                var chunk = new byte[1 << 20];
                new Random(1).NextBytes(chunk);
                for (long left = (long)count * elems * 2; left > 0; left -= chunk.Length) w.Append(chunk);
                w.Complete();
            }
            var before = Directory.GetFiles(input).ToDictionary(f => f, f => (new FileInfo(f).Length, File.GetLastWriteTimeUtc(f)));
            string output = Path.Combine(work, "out");
            string[] args = { "convert", input, output, "--to", "native", "--allow-unknown", "--max-shard-size", "16MB", "--threads", "1" };

            var psi = new ProcessStartInfo("dotnet") { RedirectStandardError = true, RedirectStandardOutput = true, UseShellExecute = false };
            psi.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "mtp.dll"));
            foreach (string a in args) psi.ArgumentList.Add(a);
            using var p = Process.Start(psi)!;
            p.OutputDataReceived += (_, _) => { };
            p.ErrorDataReceived += (_, _) => { };
            p.BeginOutputReadLine();
            p.BeginErrorReadLine();
            string partial = output + Leftovers.PartialSuffix + p.Id;
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
                Assert.That(ck.Tensors.Count(t => t.Name.StartsWith("extra.blob", StringComparison.Ordinal)), Is.EqualTo(count));
            foreach (var (f, info) in before)
                Assert.That((new FileInfo(f).Length, File.GetLastWriteTimeUtc(f)), Is.EqualTo(info), $"input {f} changed");
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
            string mine = output + Leftovers.PartialSuffix + Environment.ProcessId;
            string dead = output + Leftovers.PartialSuffix + int.MaxValue;
            string other = Path.Combine(work, "other.partial-" + int.MaxValue);
            foreach (string d in new[] { mine, dead, other }) Directory.CreateDirectory(d);
            var removed = Leftovers.RemoveStale(output);
            Assert.That(removed, Is.EqualTo(new[] { dead }));
            Assert.That(Directory.Exists(mine) && Directory.Exists(other), Is.True);
        }
        finally { Directory.Delete(work, true); }
    }
}
