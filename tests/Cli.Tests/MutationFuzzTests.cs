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
                string what = Mutate(target, rng);

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

    static string Mutate(string path, Random rng)
    {
        byte[] b = File.ReadAllBytes(path);
        bool json = path.EndsWith(".json");
        long headerEnd = json ? b.Length : Math.Min(b.Length, 8 + (long)BitConverter.ToUInt64(b, 0));
        switch (rng.Next(7))
        {
            case 0: // flip a byte inside the header
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
            case 3: // replace a number in the JSON with another one
            {
                string text = Encoding.UTF8.GetString(b, json ? 0 : 8, (int)headerEnd - (json ? 0 : 8));
                var digits = Enumerable.Range(0, text.Length).Where(k => char.IsDigit(text[k])).ToList();
                if (digits.Count == 0) goto default;
                int at = digits[rng.Next(digits.Count)];
                string[] repl = { "0", "9", "99999999999", "-1", "1e30", "18446744073709551615", "" };
                string r = repl[rng.Next(repl.Length)];
                string mutated = text[..at] + r + text[(at + 1)..];
                byte[] nb = Encoding.UTF8.GetBytes(mutated);
                byte[] outBytes = json ? nb : Rebuild(b, nb, (int)headerEnd);
                File.WriteAllBytes(path, outBytes);
                return $"number at {at} -> '{r}'";
            }
            case 4: // swap the dtype of a tensor
            {
                string text = Encoding.UTF8.GetString(b);
                string[] dtypes = { "\"F32\"", "\"BF16\"", "\"F8_E4M3\"", "\"F8_E8M0\"", "\"I8\"", "\"F4\"", "\"X9\"" };
                string from = dtypes[rng.Next(dtypes.Length - 1)], to = dtypes[rng.Next(dtypes.Length)];
                int idx = text.IndexOf(from, StringComparison.Ordinal);
                if (idx < 0 || from.Length != to.Length) goto default;
                Encoding.UTF8.GetBytes(to).CopyTo(b, Encoding.UTF8.GetByteCount(text[..idx]));
                File.WriteAllBytes(path, b);
                return $"dtype {from} -> {to}";
            }
            case 5: // scribble on tensor data (must not matter to inspect)
            {
                if (headerEnd >= b.Length) goto default;
                int at = rng.Next((int)headerEnd, b.Length);
                b[at] = (byte)rng.Next(256);
                File.WriteAllBytes(path, b);
                return $"data byte at {at}";
            }
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
