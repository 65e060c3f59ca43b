using System.Diagnostics;
using System.Text;
using Mtp.Cli;
using Mtp.Tests.Shared;

namespace Mtp.Reliability.Tests;

/// <summary>
/// Seeded random mutations of the smallest checkpoints (HF fixture and its training-layout conversion): header bytes,
/// the length word, JSON numbers, dtypes, truncation, data bytes, index and config edits. Each case runs
/// <c>convert</c> in-process into a fresh output path and must end in a documented exit code (never internal), within
/// a time limit, with one stderr line on failure, and leave no output (or temporary directory) behind on failure.
/// MTP_FUZZ_CASES raises the count for a longer run by hand; MTP_FUZZ_SEED changes the seed.
/// </summary>
public class ConvertFuzzTests
{
    static int Cases => int.TryParse(Environment.GetEnvironmentVariable("MTP_FUZZ_CASES"), out int n) ? n : 2000;
    static int Seed => int.TryParse(Environment.GetEnvironmentVariable("MTP_FUZZ_SEED"), out int s) ? s : 20261124;

    static readonly int[] Allowed = { ExitCodes.Ok, ExitCodes.Usage, ExitCodes.Malformed, ExitCodes.Inconsistent, ExitCodes.Different };

    [Test]
    public void MutatedCheckpointsNeverCrashHangOrLeaveOutput()
    {
        var rng = new Random(Seed);
        var bases = new[] { CorpusBase.Hf, CorpusBase.Native, CorpusBase.HfV4 };
        var originals = bases.Select(b => (Base: b, Files: Directory.GetFiles(Corpus.BaseDir(b)).ToDictionary(f => Path.GetFileName(f)!, File.ReadAllBytes))).ToArray();
        string work = RepoPaths.NewTempDir("convert-fuzz");
        string dir = Path.Combine(work, "in");
        var byCode = new SortedDictionary<int, int>();
        var failures = new List<string>();
        var sw = Stopwatch.StartNew();
        try
        {
            for (int i = 0; i < Cases; i++)
            {
                var (b, files) = originals[rng.Next(originals.Length)];
                if (Directory.Exists(dir)) Directory.Delete(dir, true);
                Directory.CreateDirectory(dir);
                foreach (var (name, bytes) in files) File.WriteAllBytes(Path.Combine(dir, name), bytes);
                string[] targets = files.Keys.Where(f => f.EndsWith(".safetensors") || f.EndsWith(".json")).ToArray();
                string target = Path.Combine(dir, targets[rng.Next(targets.Length)]);
                string what = CheckpointMutator.Mutate(target, rng);
                string outDir = Path.Combine(work, "out" + i);
                string[] args = i % 10 == 9
                    ? new[] { "verify", "--json", dir, Corpus.BaseDir(b) }
                    : new[] { "convert", dir, outDir, "--to", b == CorpusBase.Native ? "hf" : "native", "--json", "--threads", "1" };

                var caseWatch = Stopwatch.StartNew();
                var (code, _, stderr) = CliRunner.Run(args);
                caseWatch.Stop();
                string where = $"case {i} ({b}: {what} in {Path.GetFileName(target)}; {args[0]})";
                if (!Allowed.Contains(code)) failures.Add($"{where}: exit {code}: {stderr.Trim()}");
                else if (caseWatch.Elapsed > TimeSpan.FromSeconds(5)) failures.Add($"{where}: took {caseWatch.Elapsed}");
                else if (code is not (ExitCodes.Ok or ExitCodes.Different) && stderr.Trim().Split('\n').Length != 1) failures.Add($"{where}: not one line: {stderr}");
                var left = Directory.GetFileSystemEntries(work).Where(p => Path.GetFileName(p) != "in").ToList();
                if (code != ExitCodes.Ok && left.Count > 0) failures.Add($"{where}: exit {code} left {string.Join(", ", left.Select(Path.GetFileName))}");
                if (code == ExitCodes.Ok && args[0] == "convert" && left.Any(p => p != outDir)) failures.Add($"{where}: temporary left beside the output");
                foreach (string p in left) Directory.Delete(p, true);
                byCode[code] = byCode.GetValueOrDefault(code) + 1;
            }
        }
        finally { Directory.Delete(work, true); }
        TestContext.Out.WriteLine($"{Cases} cases (seed {Seed}) in {sw.Elapsed.TotalSeconds:F1} s; exit codes: " +
            string.Join(", ", byCode.Select(kv => $"{kv.Key} x{kv.Value}")));
        Assert.That(failures, Is.Empty, string.Join("\n", failures.Take(15)));
        Assert.That(byCode.Keys.Count(k => k != 0), Is.GreaterThanOrEqualTo(2), "mutations reach more than one error class");
    }
}
