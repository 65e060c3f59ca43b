using System.Text.Json.Nodes;
using Mtp.Tests.Shared;

namespace Mtp.Cli.Tests;

/// <summary><c>mtp bench load</c> and <c>mtp bench train</c> report what they measured, per checkpoint.</summary>
public class BenchLoadAndTrainTests
{
    static string Fixture(string name) => Path.Combine(RepoPaths.Fixtures, name);

    [Test]
    public void BenchLoadReportsTheParameterBytesOfTheModel()
    {
        var (code, stdout, err) = CliRunner.Run("bench", "load", Fixture("deepseek-v3"), "--dtype", "f32", "--json");
        Assert.That(code, Is.EqualTo(0), err);
        var o = JsonNode.Parse(stdout)!;
        // 92,416 trainable parameters plus the F32 router-bias buffers of the 2 MoE layers and the depth (4 experts each).
        Assert.That(o["parameter_bytes"]!.GetValue<long>(), Is.EqualTo((92_416 + 3 * 4) * 4));
        Assert.That(o["peak_rss_bytes"]!.GetValue<long>(), Is.GreaterThanOrEqualTo(o["rss_before_bytes"]!.GetValue<long>()));
        Assert.That(o["loader"]!.GetValue<string>(), Is.EqualTo("direct"));
    }

    [Test]
    public void BenchTrainTimesEachCheckpointInEachDtype()
    {
        var (code, stdout, err) = CliRunner.Run("bench", "train", Fixture("deepseek-v3"), Fixture("qwen3.5-moe"), "--steps", "1", "--untimed", "2", "--seq-len", "16", "--json");
        Assert.That(code, Is.EqualTo(0), err);
        var rows = JsonNode.Parse(stdout)!["results"]!.AsArray();
        Assert.That(rows.Select(r => $"{r!["family"]} {r["dtype"]}"), Is.EqualTo(new[] { "deepseek-v3 f32", "deepseek-v3 bf16", "qwen3.5 f32", "qwen3.5 bf16" }));
        Assert.That(rows.Select(r => r!["median_step_ms"]!.GetValue<double>()), Is.All.GreaterThan(0));
        Assert.That(rows.Select(r => r!["warmup_steps"]!.GetValue<int>()), Is.All.EqualTo(2));
    }

    [Test]
    public void BenchTrainWarmsUpUntilTheJitIsDoneByDefault()
    {
        var (code, stdout, err) = CliRunner.Run("bench", "train", Fixture("deepseek-v3"), "--steps", "1", "--seq-len", "16", "--dtype", "f32", "--json");
        Assert.That(code, Is.EqualTo(0), err);
        int warmup = JsonNode.Parse(stdout)!["results"]![0]!["warmup_steps"]!.GetValue<int>();
        // The first steps compile the step code (tier 0, then tier 1 after 30 calls and 100 ms): never done in 2 steps.
        Assert.That(warmup, Is.InRange(3, 200));
    }

    [Test]
    public void BenchTrainRefusesAMissingCheckpoint()
    {
        var (code, _, err) = CliRunner.Run("bench", "train", "/nonexistent/ckpt");
        Assert.That(code, Is.EqualTo(ExitCodes.Usage), err);
        Assert.That(err, Does.Contain("/nonexistent/ckpt"));
    }
}
