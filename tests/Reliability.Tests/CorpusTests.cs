using System.Diagnostics;
using System.Text.Json.Nodes;
using Mtp.Cli;
using Mtp.Tests.Shared;

namespace Mtp.Reliability.Tests;

/// <summary>
/// Every malformed checkpoint of the generated corpus, run against inspect, convert --to native, convert --to hf and
/// verify: each ends in its documented exit code with one stderr line and a JSON error object naming the file (and the
/// tensor where there is one), nothing is left in or beside the output directory, and the input is not modified.
/// </summary>
public class CorpusTests
{
    static readonly int[] Documented = { ExitCodes.Ok, ExitCodes.Usage, ExitCodes.Malformed, ExitCodes.Inconsistent, ExitCodes.Io, ExitCodes.Different };

    public static IEnumerable<CorpusCase> Cases() => Corpus.All();

    [Test]
    public void CorpusRunsCleanAgainstEveryCommand()
    {
        var cases = Corpus.All().ToList();
        var failures = new List<string>();
        var perClass = new SortedDictionary<int, int>();
        var categories = new SortedDictionary<string, int>(StringComparer.Ordinal);
        var sw = Stopwatch.StartNew();
        string work = RepoPaths.NewTempDir("corpus");
        try
        {
            int i = 0;
            foreach (CorpusCase c in cases)
            {
                string dir = Path.Combine(work, $"c{i++}");
                Corpus.CopyDir(Corpus.BaseDir(c.Base), dir);
                c.Apply(dir);
                var before = Snapshot(dir);
                bool hfInput = c.Base is CorpusBase.Hf or CorpusBase.HfV4;
                perClass[c.Expected] = perClass.GetValueOrDefault(c.Expected) + 1;
                categories[c.Category] = categories.GetValueOrDefault(c.Category) + 1;

                Check(c, "inspect", c.Inspect ?? c.Expected, true, failures, "inspect", "--json", dir);
                Check(c, "convert --to native", hfInput ? c.Expected : null, false, failures, ConvertArgs(dir, work, "native"));
                Check(c, "convert --to hf", hfInput ? null : c.Expected, false, failures, ConvertArgs(dir, work, "hf"));
                Check(c, "verify", c.Verify ?? c.Expected, false, failures, "verify", "--json", dir, Corpus.BaseDir(c.Base));
                if (!Snapshot(dir).SequenceEqual(before)) failures.Add($"{c}: the input was modified");
                Directory.Delete(dir, true);
            }
        }
        finally { Directory.Delete(work, true); }
        TestContext.Out.WriteLine($"{cases.Count} corpus cases x 4 commands in {sw.Elapsed.TotalSeconds:F1} s; expected classes: " +
            string.Join(", ", perClass.Select(kv => $"{ExitCodes.ClassName(kv.Key)} x{kv.Value}")) + "; categories: " +
            string.Join(", ", categories.Select(kv => $"{kv.Key} x{kv.Value}")));
        Assert.That(failures, Is.Empty, string.Join("\n", failures.Take(40)) + (failures.Count > 40 ? $"\n... {failures.Count - 40} more" : ""));
    }

    static string[] ConvertArgs(string dir, string work, string to) =>
        new[] { "convert", dir, Path.Combine(work, "out"), "--to", to, "--json", "--threads", "1" };

    /// <summary>Runs one command; <paramref name="expected"/> null: any documented non-internal code is accepted.</summary>
    static void Check(CorpusCase c, string what, int? expected, bool inspect, List<string> failures, params string[] args)
    {
        var sw = Stopwatch.StartNew();
        var (code, stdout, stderr) = CliRunner.Run(args);
        string where = $"{c} / {what}";
        if (args[0] == "convert")
        {
            string work = Path.GetDirectoryName(args[2])!;
            foreach (string d in Directory.GetDirectories(work).Where(d => Path.GetFileName(d).StartsWith("out", StringComparison.Ordinal)))
            {
                if (code != ExitCodes.Ok || d != args[2]) failures.Add($"{where}: exit {code} left {Path.GetFileName(d)} behind");
                Directory.Delete(d, true);
            }
        }
        if (sw.Elapsed > TimeSpan.FromSeconds(10)) failures.Add($"{where}: took {sw.Elapsed.TotalSeconds:F1} s");
        if (!Documented.Contains(code)) { failures.Add($"{where}: exit {code}: {stderr.Trim()}"); return; }
        if (expected is int e && code != e) { failures.Add($"{where}: exit {code}, expected {e}: {stderr.Trim()}"); return; }
        if (code == ExitCodes.Ok || code == ExitCodes.Different) return;
        string[] lines = stderr.Trim().Split('\n');
        if (lines.Length != 1 || !lines[0].StartsWith("mtp: ", StringComparison.Ordinal)) { failures.Add($"{where}: stderr is not one 'mtp: ' line: {stderr}"); return; }
        // inspect --json prints its report with every problem, and the first as "error".
        JsonObject? err;
        try { err = JsonNode.Parse(stdout)?["error"] as JsonObject; }
        catch (System.Text.Json.JsonException) { err = null; }
        if (err == null) { failures.Add($"{where}: stdout is not a JSON error object: {stdout}"); return; }
        if (err["class"]?.GetValue<string>() != ExitCodes.ClassName(code)) failures.Add($"{where}: JSON class {err["class"]} for exit {code}");
        if (expected != null && err["file"] == null && code != ExitCodes.Usage) failures.Add($"{where}: JSON error names no file: {err.ToJsonString()}");
        if (expected != null && c.NamesTensor && !inspect && err["tensor"] == null) failures.Add($"{where}: JSON error names no tensor: {err.ToJsonString()}");
    }

    static List<(string, long, DateTime)> Snapshot(string dir) =>
        Directory.GetFileSystemEntries(dir, "*", SearchOption.AllDirectories).OrderBy(x => x, StringComparer.Ordinal)
            .Select(f => (f, File.Exists(f) ? new FileInfo(f).Length : -1, File.GetLastWriteTimeUtc(f))).ToList();
}
