using System.Diagnostics;
using System.Text.Json.Nodes;
using Mtp.SafeTensors;
using Mtp.Tests.Shared;

namespace Mtp.Cli.Tests;

public class InspectCommandTests
{
    static JsonObject Manifest => (JsonObject)JsonNode.Parse(File.ReadAllText(Path.Combine(RepoPaths.Fixtures, "manifest.json")))!["fixtures"]!;

    public static IEnumerable<string> FixtureNames() =>
        ((JsonObject)JsonNode.Parse(File.ReadAllText(Path.Combine(RepoPaths.Fixtures, "manifest.json")))!["fixtures"]!).Select(kv => kv.Key);

    [TestCaseSource(nameof(FixtureNames))]
    public void InspectJsonMatchesTheGeneratorsManifest(string fixture)
    {
        JsonObject expected = (JsonObject)Manifest[fixture]!;
        var (code, stdout, stderr) = CliRunner.Run("inspect", "--json", Path.Combine(RepoPaths.Fixtures, fixture));
        Assert.That(code, Is.EqualTo(0), stderr);
        var got = (JsonObject)JsonNode.Parse(stdout)!;

        string expectedFamily = (string)expected["model_type"]! switch
        {
            "deepseek_v3" => "deepseek-v3",
            "deepseek_v4" => "deepseek-v4",
            "deepseek_v32" => "deepseek-v3.2",
            "glm4_moe" => "glm-4.5",
            "glm_moe_dsa" => "glm-5",
            "mimo" => "mimo",
            "mimo_v2_flash" => "mimo-v2-flash",
            "qwen3_next" => "qwen3-next",
            _ => "qwen3.5",
        };
        Assert.That((string)got["family"]!, Is.EqualTo(expectedFamily));
        Assert.That((long)got["tensor_count"]!, Is.EqualTo((long)expected["tensor_count"]!));
        Assert.That((long)got["total_bytes"]!, Is.EqualTo((long)expected["total_bytes"]!));
        Assert.That((int)got["mtp_depth"]!, Is.EqualTo((int)expected["mtp_depth"]!));
        Assert.That((string)got["expert_layout"]!, Is.EqualTo((string)expected["expert_layout"]!));
        var dtypes = ((JsonObject)got["dtype_counts"]!).ToDictionary(kv => kv.Key, kv => (int)kv.Value!);
        var wantDtypes = ((JsonObject)expected["dtype_counts"]!).ToDictionary(kv => kv.Key, kv => (int)kv.Value!);
        Assert.That(dtypes, Is.EquivalentTo(wantDtypes));
        Assert.That(((JsonArray)got["problems"]!).Count, Is.EqualTo(0));
        Assert.That((int)got["mtp_tensor_count"]!, Is.GreaterThan(0));
        int quantized = (int)got["fp8_weight_count"]! + (int)got["fp4_weight_count"]!;
        Assert.That(quantized, Is.EqualTo((int)expected["quantized_count"]!), "every quantized weight is found with its scale");
    }

    [Test]
    public void MtpTensorsOfDeepSeekV3AreTheLayersPastNumHiddenLayers()
    {
        var (code, stdout, _) = CliRunner.Run("inspect", "--json", Path.Combine(RepoPaths.Fixtures, "deepseek-v3"));
        Assert.That(code, Is.EqualTo(0));
        var got = (JsonObject)JsonNode.Parse(stdout)!;
        using var ck = Checkpoint.Open(Path.Combine(RepoPaths.Fixtures, "deepseek-v3"));
        int expected = ck.Tensors.Count(t => t.Name.StartsWith("model.layers.3.", StringComparison.Ordinal));
        Assert.That((int)got["mtp_tensor_count"]!, Is.EqualTo(expected));
        Assert.That(((JsonArray)got["mtp_locations"]!).Select(l => (string)l!), Is.EqualTo(new[] { "model.layers.{3+k}.*" }));
    }

    [Test]
    public void MtpOfMimoV2FlashIsFoundUnderModelMtpLayersWithoutAConfigDepth()
    {
        var (code, stdout, stderr) = CliRunner.Run("inspect", "--json", Path.Combine(RepoPaths.Fixtures, "mimo-v2-flash"));
        Assert.That(code, Is.EqualTo(0), stderr);
        var got = (JsonObject)JsonNode.Parse(stdout)!;
        using var ck = Checkpoint.Open(Path.Combine(RepoPaths.Fixtures, "mimo-v2-flash"));
        var mtp = ck.Tensors.Where(t => t.Name.StartsWith("model.mtp.layers.", StringComparison.Ordinal)).ToList();
        Assert.That((int)got["mtp_tensor_count"]!, Is.EqualTo(mtp.Count));
        Assert.That((int)got["mtp_depth"]!, Is.EqualTo(mtp.Select(t => t.Name.Split('.')[3]).Distinct().Count()));
        Assert.That(got["config_mtp_depth"], Is.Null);
        Assert.That(((JsonArray)got["mtp_locations"]!).Select(l => (string)l!), Is.EqualTo(new[] { "model.mtp.layers.{k}.*" }));
        // Both full-attention k_proj (2 KV heads of 192 rows) are blocked per head, as in the release.
        Assert.That(((JsonArray)got["quantization"]!).Select(l => (string)l!).Single(),
            Does.StartWith("FP8 E4M3 block 128x128, scale F32").And.EndWith("; 2 with block 128x128 per 192 rows)"));
    }

    [Test]
    public void TruncatedShardExitsNonZeroWithOneClearLine()
    {
        string dir = RepoPaths.NewTempDir("inspect-trunc");
        foreach (string f in Directory.GetFiles(Path.Combine(RepoPaths.Fixtures, "deepseek-v3")))
            File.Copy(f, Path.Combine(dir, Path.GetFileName(f)));
        string shard = Path.Combine(dir, "model-00002-of-00002.safetensors");
        byte[] bytes = File.ReadAllBytes(shard);
        File.WriteAllBytes(shard, bytes[..(bytes.Length - 100)]);

        var (code, stdout, stderr) = CliRunner.Run("inspect", dir);
        Assert.That(code, Is.EqualTo(ExitCodes.Malformed));
        string[] lines = stderr.Trim().Split('\n');
        Assert.That(lines, Has.Length.EqualTo(1), stderr);
        Assert.That(lines[0], Does.StartWith("mtp: ").And.Contain("model-00002-of-00002.safetensors").And.Contain("truncated"));
        Assert.That(stderr, Does.Not.Contain("   at "), "no stack trace without --verbose");
        Directory.Delete(dir, true);
    }

    [Test]
    public void JsonErrorForAMissingPath()
    {
        var (code, stdout, _) = CliRunner.Run("inspect", "--json", "/nonexistent/ckpt");
        Assert.That(code, Is.EqualTo(ExitCodes.Usage));
        var err = (JsonObject)JsonNode.Parse(stdout)!["error"]!;
        Assert.That((string)err["class"]!, Is.EqualTo("usage"));
        Assert.That((string)err["message"]!, Does.Contain("/nonexistent/ckpt"));
    }

    [Test]
    public void ScaleGridThatDoesNotFitIsAProblem()
    {
        string dir = RepoPaths.NewTempDir("inspect-grid");
        SafeTensorsWriter.WriteFile(Path.Combine(dir, "model.safetensors"), new[]
        {
            (new TensorSpec("a.weight", DType.F8_E4M3, new long[] { 200, 130 }), new byte[200 * 130]),
            (new TensorSpec("a.weight_scale_inv", DType.F32, new long[] { 2, 1 }), new byte[8]),
            (new TensorSpec("b.weight", DType.F8_E4M3, new long[] { 4, 4 }), new byte[16]),
        });
        var (code, stdout, stderr) = CliRunner.Run("inspect", "--json", dir);
        Assert.That(code, Is.EqualTo(ExitCodes.Malformed)); // the grid misfit (malformed) outranks the missing scale (inconsistent)
        var problems = ((JsonArray)JsonNode.Parse(stdout)!["problems"]!).Select(p => (string)p!).ToList();
        Assert.That(problems, Has.Some.Contains("a.weight_scale_inv").And.Contains("expected [2, 2]"));
        Assert.That(problems, Has.Some.Contains("'b.weight'").And.Contains("no scale"));
        Directory.Delete(dir, true);
    }

    [Test]
    public void AThousandTensorShardedCheckpointInspectsWellUnderASecond()
    {
        string dir = RepoPaths.NewTempDir("inspect-1000");
        var specs = Enumerable.Range(0, 1000).Select(i => new TensorSpec($"model.layers.{i / 10}.w{i % 10}.weight", DType.BF16, new long[] { 16, 8 })).ToList();
        var shards = ShardPlanner.Plan(specs, 256 * 100);
        foreach (var s in shards)
            SafeTensorsWriter.WriteFile(Path.Combine(dir, s.FileName), s.Tensors.Select(t => (t, new byte[t.ByteLength])));
        ShardPlanner.WriteIndex(dir, shards);
        Assert.That(shards.Count, Is.EqualTo(10));

        CliRunner.Run("inspect", "--json", dir); // warm up the JIT once
        var sw = Stopwatch.StartNew();
        var (code, stdout, _) = CliRunner.Run("inspect", "--json", dir);
        sw.Stop();
        Assert.That(code, Is.EqualTo(0));
        Assert.That((long)JsonNode.Parse(stdout)!["tensor_count"]!, Is.EqualTo(1000));
        TestContext.Out.WriteLine($"inspect of 1000 tensors in 10 shards: {sw.Elapsed.TotalMilliseconds:F1} ms");
        Assert.That(sw.Elapsed, Is.LessThan(TimeSpan.FromSeconds(1)));
        Directory.Delete(dir, true);
    }
}

public class BenchKernelsCommandTests
{
    [Test]
    public void JsonCarriesEveryFigure()
    {
        var (code, stdout, stderr) = CliRunner.Run("bench", "kernels", "--json", "--rows", "256", "--cols", "256", "--seconds", "0.01");
        Assert.That(code, Is.EqualTo(0), stderr);
        var o = (System.Text.Json.Nodes.JsonObject)System.Text.Json.Nodes.JsonNode.Parse(stdout)!;
        foreach (string k in new[] { "fp8_bf16_f32scale_gbps", "fp8_bf16_e8m0_gbps", "fp4_bf16_gbps", "bf16_fp8_gbps", "memcpy_gbps", "bf16_fp4_exact_verify_gbps", "bf16_fp8_exact_verify_gbps" })
            Assert.That((double)o[k]!, Is.GreaterThan(0), k);
        Assert.That((int)o["threads"]!, Is.EqualTo(Environment.ProcessorCount));
    }

    [Test]
    public void BadShapeIsAUsageError() =>
        Assert.That(CliRunner.Run("bench", "kernels", "--cols", "33").Code, Is.EqualTo(ExitCodes.Usage));
}
