using System.Text.Json.Nodes;
using Mtp.Tests.Shared;

namespace Mtp.Cli.Tests;

/// <summary><c>mtp bench convert --json</c> on a small size, and <c>convert --part / --merge-index</c> from the command line.</summary>
public class BenchConvertCommandTests
{
    [Test, CancelAfter(120_000)]
    public void BenchConvertJsonHasTheDocumentedKeys()
    {
        string work = RepoPaths.NewTempDir("bench-convert");
        var (code, stdout, stderr) = CliRunner.Run("bench", "convert", "--size", "64MB", "--json", "--work", work, "--cache", "warm", "--repeat", "2");
        Assert.That(code, Is.EqualTo(0), stderr + stdout);
        var o = (JsonObject)JsonNode.Parse(stdout)!;
        foreach (string k in new[] { "input_bytes", "output_bytes", "io_floor_s", "to_native_s", "to_hf_s", "to_native_ratio", "to_hf_ratio", "peak_rss_bytes" })
            Assert.That(o.ContainsKey(k), Is.True, k);
        Assert.That(o["input_bytes"]!.GetValue<long>(), Is.InRange(50_000_000L, 80_000_000L));
        Assert.That(o["output_bytes"]!.GetValue<long>(), Is.GreaterThan(o["input_bytes"]!.GetValue<long>()), "FP8/FP4 -> BF16 grows");
        Assert.That(o["peak_rss_bytes"]!.GetValue<long>(), Is.InRange(10_000_000L, 4_000_000_000L));
        Assert.That(o["to_native_s"]!.GetValue<double>(), Is.GreaterThan(0));
        Assert.That(o["round_trip_same_size"]!.GetValue<bool>(), Is.True);
        var runs = o["runs"]!.AsArray();
        Assert.That(runs, Has.Count.EqualTo(2), "--repeat 2");
        var nativeTimes = runs.Select(r => r!["to_native_s"]!.GetValue<double>()).Order().ToArray();
        Assert.That(o["to_native_s"]!.GetValue<double>(), Is.EqualTo((nativeTimes[0] + nativeTimes[1]) / 2).Within(0.0015), "median of the runs");
        Assert.That(o["to_hf_cpu_s"]!.GetValue<double>(), Is.GreaterThan(0), "child CPU time from getrusage");
        Assert.That(o["to_hf_ratio"]!.GetValue<double>(),
            Is.EqualTo(o["to_hf_s"]!.GetValue<double>() / o["io_floor_to_hf_s"]!.GetValue<double>()).Within(2).Percent, "against the plain floor: V4 re-encodes from the scales, reading no reference codes");
        Assert.That(Directory.EnumerateFileSystemEntries(work).Any(), Is.False, "cleaned up without --keep");
        Directory.Delete(work, true);
    }

    [Test]
    public void ConvertPartsAndMergeFromTheCommandLine()
    {
        string fx = Path.Combine(RepoPaths.Fixtures, "deepseek-v4-flash");
        if (!File.Exists(Path.Combine(fx, "config.json"))) Assert.Ignore("fixture not present");
        string tmp = RepoPaths.NewTempDir("cli-parts"), one = Path.Combine(tmp, "one"), split = Path.Combine(tmp, "split");
        Assert.That(CliRunner.Run("convert", fx, one, "--to", "native", "--max-shard-size", "100KB").Code, Is.EqualTo(0));
        Assert.That(CliRunner.Run("convert", fx, split, "--to", "native", "--max-shard-size", "100KB", "--part", "1/2").Code, Is.EqualTo(0));
        var missing = CliRunner.Run("convert", "--merge-index", split);
        Assert.That(missing.Code, Is.EqualTo(ExitCodes.Inconsistent));
        Assert.That(missing.Err.Trim().Split('\n'), Has.Length.EqualTo(1));
        Assert.That(missing.Err, Does.Contain("2/2"));
        Assert.That(CliRunner.Run("convert", fx, split, "--to", "native", "--max-shard-size", "100KB", "--part", "3/2").Code, Is.EqualTo(ExitCodes.Usage));
        Assert.That(CliRunner.Run("convert", fx, split, "--to", "native", "--max-shard-size", "100KB", "--part", "2/2").Code, Is.EqualTo(0));
        var merged = CliRunner.Run("convert", "--merge-index", split);
        Assert.That(merged.Code, Is.EqualTo(0), merged.Err);
        var v = CliRunner.Run("verify", one, split);
        Assert.That(v.Code, Is.EqualTo(0), v.Out + v.Err);
        Directory.Delete(tmp, true);
    }
}
