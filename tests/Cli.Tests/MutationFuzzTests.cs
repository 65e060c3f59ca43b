using System.Diagnostics;
using System.Text;
using Mtp.Tests.Shared;

namespace Mtp.Cli.Tests;

/// <summary>
/// Seeded random mutations of real fixture files (header bytes, length word, JSON numbers, truncation,
/// data bytes): every case must end in a documented exit code, never an internal error, within a time
/// limit. MTP_FUZZ_CASES raises the case count for a longer run by hand; MTP_FUZZ_SEED changes the seed.
/// </summary>
public class MutationFuzzTests
{
    static int Cases => int.TryParse(Environment.GetEnvironmentVariable("MTP_FUZZ_CASES"), out int n) ? n : 2000;
    static int Seed => int.TryParse(Environment.GetEnvironmentVariable("MTP_FUZZ_SEED"), out int s) ? s : 20261123;

    static readonly int[] Allowed = { ExitCodes.Ok, ExitCodes.Usage, ExitCodes.Malformed, ExitCodes.Inconsistent };

    [Test]
    public void MutatedCheckpointsNeverCrashOrHang()
    {
        var rng = new Random(Seed);
        string[] sources = { "deepseek-v3", "deepseek-v4-flash", "qwen3.5-moe-fp8" };
        var originals = sources.Select(s => Directory.GetFiles(Path.Combine(RepoPaths.Fixtures, s))).ToArray();
        string dir = RepoPaths.NewTempDir("fuzz");
        var byCode = new SortedDictionary<int, int>();
        var failures = new List<string>();
        var sw = Stopwatch.StartNew();
        try
        {
            for (int i = 0; i < Cases; i++)
            {
                string[] files = originals[rng.Next(originals.Length)];
                foreach (string f in Directory.GetFiles(dir)) File.Delete(f);
                foreach (string f in files) File.Copy(f, Path.Combine(dir, Path.GetFileName(f)));
                string[] targets = files.Where(f => f.EndsWith(".safetensors") || f.EndsWith(".json")).ToArray();
                string target = Path.Combine(dir, Path.GetFileName(targets[rng.Next(targets.Length)]));
                string what = CheckpointMutator.Mutate(target, rng);

                var caseWatch = Stopwatch.StartNew();
                var (code, _, stderr) = CliRunner.Run("inspect", "--json", dir);
                caseWatch.Stop();
                string where = $"case {i} ({what} in {Path.GetFileName(target)})";
                if (!Allowed.Contains(code)) failures.Add($"{where}: exit {code}: {stderr.Trim()}");
                else if (caseWatch.Elapsed > TimeSpan.FromSeconds(5)) failures.Add($"{where}: took {caseWatch.Elapsed}");
                else if (code != ExitCodes.Ok && stderr.Trim().Split('\n').Length != 1) failures.Add($"{where}: not one line: {stderr}");
                byCode[code] = byCode.GetValueOrDefault(code) + 1;
            }
        }
        finally { Directory.Delete(dir, true); }
        TestContext.Out.WriteLine($"{Cases} cases (seed {Seed}) in {sw.Elapsed.TotalSeconds:F1} s; exit codes: " +
            string.Join(", ", byCode.Select(kv => $"{kv.Key} x{kv.Value}")));
        Assert.That(failures, Is.Empty, string.Join("\n", failures.Take(10)));
        Assert.That(byCode.Keys.Count(k => k != 0), Is.GreaterThanOrEqualTo(2), "mutations reach more than one error class");
    }
}
