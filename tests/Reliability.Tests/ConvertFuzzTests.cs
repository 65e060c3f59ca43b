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
                string what = Mutate(target, rng);
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

    static string Mutate(string path, Random rng)
    {
        byte[] b = File.ReadAllBytes(path);
        bool json = path.EndsWith(".json");
        long headerEnd = json ? b.Length : Math.Min(b.Length, 8 + (long)BitConverter.ToUInt64(b, 0));
        switch (rng.Next(9))
        {
            case 0: // flip a bit inside the header
            {
                int at = rng.Next(json ? 0 : 8, (int)headerEnd);
                b[at] ^= (byte)(1 << rng.Next(8));
                File.WriteAllBytes(path, b);
                return $"bit flip at {at}";
            }
            case 1: // truncate anywhere
            {
                int len = rng.Next(0, b.Length);
                File.WriteAllBytes(path, b[..len]);
                return $"truncate to {len}";
            }
            case 2 when !json: // rewrite the header length word
            {
                ulong[] values = { 0, 1, 7, (ulong)b.Length, (ulong)b.Length - 8, 100_000_001, ulong.MaxValue, (ulong)rng.NextInt64() };
                ulong v = values[rng.Next(values.Length)];
                BitConverter.TryWriteBytes(b.AsSpan(0, 8), v);
                File.WriteAllBytes(path, b);
                return $"header length {v}";
            }
            case 3: // replace a digit in the JSON with another number
            {
                string text = Encoding.UTF8.GetString(b, json ? 0 : 8, (int)headerEnd - (json ? 0 : 8));
                var digits = Enumerable.Range(0, text.Length).Where(k => char.IsDigit(text[k])).ToList();
                if (digits.Count == 0) goto default;
                int at = digits[rng.Next(digits.Count)];
                string[] repl = { "0", "1", "2", "9", "99999999999", "-1", "1e30", "18446744073709551615", "", "0.5" };
                string r = repl[rng.Next(repl.Length)];
                string mutated = text[..at] + r + text[(at + 1)..];
                byte[] nb = Encoding.UTF8.GetBytes(mutated);
                File.WriteAllBytes(path, json ? nb : Rebuild(b, nb, (int)headerEnd));
                return $"number at {at} -> '{r}'";
            }
            case 4: // swap a dtype
            {
                string text = Encoding.UTF8.GetString(b);
                string[] dtypes = { "\"F32\"", "\"BF16\"", "\"F16\"", "\"F8_E4M3\"", "\"F8_E8M0\"", "\"I8\"", "\"U8\"", "\"F4\"", "\"I32\"", "\"X9\"" };
                string from = dtypes[rng.Next(dtypes.Length - 1)], to = dtypes[rng.Next(dtypes.Length)];
                var hits = new List<int>();
                for (int k = text.IndexOf(from, StringComparison.Ordinal); k >= 0; k = text.IndexOf(from, k + 1, StringComparison.Ordinal)) hits.Add(k);
                if (hits.Count == 0 || from.Length != to.Length) goto default;
                int idx = hits[rng.Next(hits.Count)];
                Encoding.UTF8.GetBytes(to).CopyTo(b, Encoding.UTF8.GetByteCount(text[..idx]));
                File.WriteAllBytes(path, b);
                return $"dtype {from} -> {to}";
            }
            case 5: // scribble on tensor data (NaN codes, 0xFF scales, anything)
            case 6:
            {
                if (headerEnd >= b.Length) goto default;
                int n = rng.Next(1, 8);
                for (int k = 0; k < n; k++) b[rng.Next((int)headerEnd, b.Length)] = rng.Next(3) switch { 0 => 0xFF, 1 => 0x7F, _ => (byte)rng.Next(256) };
                File.WriteAllBytes(path, b);
                return $"{n} data bytes";
            }
            case 7: // delete the file (shard, index or config)
                File.Delete(path);
                return "delete";
            default: // append junk
            {
                var junk = new byte[rng.Next(1, 64)];
                rng.NextBytes(junk);
                File.WriteAllBytes(path, b.Concat(junk).ToArray());
                return $"append {junk.Length} bytes";
            }
        }
    }

    static byte[] Rebuild(byte[] original, byte[] header, int headerEnd)
    {
        var result = new byte[8 + header.Length + (original.Length - headerEnd)];
        BitConverter.TryWriteBytes(result.AsSpan(0, 8), (ulong)header.Length);
        header.CopyTo(result, 8);
        original.AsSpan(headerEnd).CopyTo(result.AsSpan(8 + header.Length));
        return result;
    }
}
