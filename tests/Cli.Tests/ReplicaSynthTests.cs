using System.Diagnostics;
using System.Text;
using System.Text.Json.Nodes;
using Mtp.SafeTensors;
using Mtp.Tests.Shared;

namespace Mtp.Cli.Tests;

/// <summary><c>mtp synth --like CONFIG.json --sparse</c>: header-true replicas of released checkpoints.</summary>
public class ReplicaSynthTests
{
    static string RealConfig(string name) => Path.Combine(RepoPaths.Fixtures, "real-configs", name + ".json");

    static string Replica(string tag, string config, params string[] extra)
    {
        string dir = Path.Combine(RepoPaths.NewTempDir("replica-" + tag), "out");
        var (code, stdout, stderr) = CliRunner.Run(new[] { "synth", "--like", config, "--sparse" }.Concat(extra).Append(dir).ToArray());
        Assert.That(code, Is.EqualTo(0), stderr + stdout);
        return dir;
    }

    static Dictionary<string, (DType DType, string Shape)> Headers(string dir)
    {
        using var ck = Checkpoint.Open(dir);
        return ck.Tensors.ToDictionary(t => t.Name, t => (t.Info.DType, t.Info.ShapeText), StringComparer.Ordinal);
    }

    // Blocks the file system allocated (stat %b, 512-byte units): holes take none.
    static long AllocatedBytes(string dir)
    {
        long total = 0;
        foreach (string f in Directory.GetFiles(dir, "*.safetensors"))
        {
            var p = Process.Start(new ProcessStartInfo("stat", new[] { "-c", "%b", f }) { RedirectStandardOutput = true })!;
            string s = p.StandardOutput.ReadToEnd();
            p.WaitForExit();
            total += long.Parse(s.Trim()) * 512;
        }
        return total;
    }

    // The fixtures are written by PyTorch from the same config.json: a replica made from that config alone must list the
    // same names, dtypes and shapes (tid2eid: the fixture writes I32, releases store I64, which the replica follows).
    [TestCase("deepseek-v3")]
    [TestCase("deepseek-v4-flash")]
    [TestCase("qwen3.5-moe")]
    [TestCase("qwen3.5-moe-fp8")]
    public void ReplicaOfAFixtureConfigHasTheFixtureHeaders(string fixture)
    {
        string dir = Replica(fixture, Path.Combine(RepoPaths.Fixtures, fixture, "config.json"));
        var want = Headers(Path.Combine(RepoPaths.Fixtures, fixture));
        var got = Headers(dir);
        Assert.That(got.Keys.Order(StringComparer.Ordinal), Is.EqualTo(want.Keys.Order(StringComparer.Ordinal)));
        foreach (var (name, (dtype, shape)) in want)
        {
            Assert.That(got[name].Shape, Is.EqualTo(shape), name);
            DType expected = name.EndsWith(".tid2eid", StringComparison.Ordinal) ? DType.I64 : dtype;
            Assert.That(got[name].DType, Is.EqualTo(expected), name);
        }
        Assert.That(File.ReadAllBytes(Path.Combine(dir, "config.json")), Is.EqualTo(File.ReadAllBytes(Path.Combine(RepoPaths.Fixtures, fixture, "config.json"))),
            "config.json is copied byte for byte");
    }

    // Data as holes, scales written for real and finite.
    [Test]
    public void ScalesAreRealAndEverythingElseIsAHole()
    {
        string dir = Replica("scales", Path.Combine(RepoPaths.Fixtures, "deepseek-v4-flash", "config.json"));
        using var ck = Checkpoint.Open(dir);
        long scales = 0;
        foreach (var t in ck.Tensors)
        {
            byte[] b = t.File.GetBytes(t.Info).ToArray();
            bool isScale = t.Info.DType == DType.F8_E8M0 || t.Name.EndsWith("_scale_inv", StringComparison.Ordinal);
            if (isScale)
            {
                scales += b.Length;
                Assert.That(b, Has.None.EqualTo((byte)0xFF), $"{t.Name}: E8M0 NaN");
                Assert.That(b, Has.None.EqualTo((byte)0), $"{t.Name}: scale left as a hole");
            }
            else Assert.That(b.All(x => x == 0), Is.True, $"{t.Name}: data should be a hole");
        }
        Assert.That(scales, Is.GreaterThan(0));
    }

    [Test]
    public void ReleaseReplicasHaveTheReleasedTensorCountsAndCostNoDisk()
    {
        // Counts of the released tensor lists, as measured on the releases' headers (issue 16): not produced by this code.
        foreach (var (name, tensors) in new[] { ("deepseek-v3", 91_991), ("deepseek-v4-flash", 69_187) })
        {
            string dir = Replica(name, RealConfig(name), "--header-only");
            var h = Headers(dir);
            Assert.That(h.Count, Is.EqualTo(tensors), name);
            long logical = Directory.GetFiles(dir, "*.safetensors").Sum(f => new FileInfo(f).Length);
            Assert.That(logical, Is.GreaterThan(150_000_000_000L), $"{name}: the shards have the release's size");
            Assert.That(AllocatedBytes(dir), Is.LessThan(64L << 20), $"{name}: a header-only replica is holes");
        }
    }

    // DeepSeek-V4's release: shard headers without __metadata__, tensors listed by dtype, then name.
    [Test]
    public void V4ShardHeadersFollowTheRelease()
    {
        string dir = Replica("v4-order", RealConfig("deepseek-v4-flash"), "--header-only");
        foreach (string f in Directory.GetFiles(dir, "*.safetensors").Take(3))
        {
            using var fs = File.OpenRead(f);
            var len = new byte[8];
            fs.ReadExactly(len);
            var json = new byte[BitConverter.ToUInt64(len)];
            fs.ReadExactly(json);
            var keys = ((JsonObject)JsonNode.Parse(Encoding.UTF8.GetString(json))!).Select(kv => (kv.Key, Dtype: kv.Value!["dtype"]!.GetValue<string>())).ToList();
            Assert.That(keys.Select(k => k.Key), Has.None.EqualTo("__metadata__"), f);
            var sorted = keys.OrderBy(k => k.Dtype, StringComparer.Ordinal).ThenBy(k => k.Key, StringComparer.Ordinal).ToList();
            Assert.That(keys, Is.EqualTo(sorted), f);
        }
    }

    // A replica with the release's V4 header style converts to the training layout and back to the same bytes.
    [Test]
    public void V4ReplicaRoundTripsThroughTheTrainingLayout()
    {
        string hf = Replica("v4-roundtrip", Path.Combine(RepoPaths.Fixtures, "deepseek-v4-flash", "config.json"));
        string work = Path.GetDirectoryName(hf)!, native = Path.Combine(work, "native"), back = Path.Combine(work, "back");
        var (code, _, err) = CliRunner.Run("convert", hf, native, "--to", "native");
        Assert.That(code, Is.EqualTo(0), err);
        (code, _, err) = CliRunner.Run("convert", native, back, "--to", "hf", "--reference", hf);
        Assert.That(code, Is.EqualTo(0), err);
        (code, var stdout, err) = CliRunner.Run("verify", hf, back);
        Assert.That(code, Is.EqualTo(0), stdout + err);
    }

    [Test]
    public void WeightMapFixesTheShardFiles()
    {
        string fixture = Path.Combine(RepoPaths.Fixtures, "deepseek-v3");
        string dir = Replica("index", Path.Combine(fixture, "config.json"), "--index", Path.Combine(fixture, ShardIndex.FileName));
        var want = ShardIndex.Read(Path.Combine(fixture, ShardIndex.FileName)).WeightMap.ToDictionary(kv => kv.Key, kv => kv.Value);
        var got = ShardIndex.Read(Path.Combine(dir, ShardIndex.FileName)).WeightMap.ToDictionary(kv => kv.Key, kv => kv.Value);
        Assert.That(got, Is.EquivalentTo(want));
    }

    [TestCase(new string[0], "add --sparse")]
    [TestCase(new[] { "--sparse", "--family", "deepseek-v3" }, "--family does not apply to --like")]
    [TestCase(new[] { "--sparse", "--header-only", "--no-fp4-scales" }, "drop --no-fp4-scales")]
    public void UsageMistakes(string[] extra, string message)
    {
        string dir = Path.Combine(RepoPaths.NewTempDir("replica-usage"), "out");
        var (code, _, stderr) = CliRunner.Run(new[] { "synth", "--like", RealConfig("deepseek-v3") }.Concat(extra).Append(dir).ToArray());
        Assert.That(code, Is.EqualTo(2), stderr);
        Assert.That(stderr, Does.Contain(message));
        Assert.That(Directory.Exists(dir), Is.False);
    }
}
