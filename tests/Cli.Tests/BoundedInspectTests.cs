using System.Text.Json.Nodes;
using Mtp.SafeTensors;
using Mtp.Tests.Shared;

namespace Mtp.Cli.Tests;

/// <summary>
/// inspect reads only scales, with positioned reads on files advised for random access and drops what it read: on
/// replicas of released checkpoints (cut to a few layers) the page cache holds no more after inspect than the headers,
/// and FP4 group scales are sampled unless --full-scales.
/// </summary>
public class BoundedInspectTests
{
    // A released config cut to a few layers and experts (the widths stay the release's).
    static string Replica(string tag, string config, Action<JsonObject> cut)
    {
        string work = RepoPaths.NewTempDir("bounded-inspect-" + tag);
        var cfg = (JsonObject)JsonNode.Parse(File.ReadAllText(Path.Combine(RepoPaths.Fixtures, "real-configs", config + ".json")))!;
        cut(cfg);
        string cfgPath = Path.Combine(work, "config.json");
        File.WriteAllText(cfgPath, cfg.ToJsonString());
        string dir = Path.Combine(work, "replica");
        var (code, stdout, stderr) = CliRunner.Run("synth", "--like", cfgPath, "--sparse", "--max-shard-size", "2GB", dir);
        Assert.That(code, Is.EqualTo(0), stderr + stdout);
        return dir;
    }

    static string V4(string tag) => Replica(tag, "deepseek-v4-flash", c =>
    {
        c["num_hidden_layers"] = 2; c["n_routed_experts"] = 8; c["num_hash_layers"] = 1; c["compress_ratios"] = new JsonArray(0, 4, 0);
    });

    static string V3(string tag) => Replica(tag, "deepseek-v3", c => { c["num_hidden_layers"] = 4; c["first_k_dense_replace"] = 1; c["n_routed_experts"] = 16; });

    static long HeaderBytes(string dir)
    {
        using var ck = Checkpoint.Open(dir);
        return ck.Files.Sum(f => f.Header.DataStart);
    }

    // Every scale tensor (V4: F8_E8M0 '.scale'; V3: '.weight_scale_inv'), from the headers.
    static List<TensorInfo> Scales(string dir)
    {
        using var ck = Checkpoint.Open(dir);
        return ck.Tensors.Select(t => t.Info).Where(t => t.DType == DType.F8_E8M0 || t.Name.EndsWith("_scale_inv", StringComparison.Ordinal)).ToList();
    }

    static JsonObject Inspect(string dir, params string[] extra)
    {
        var (code, stdout, stderr) = CliRunner.Run(new[] { "inspect", "--json" }.Concat(extra).Append(dir).ToArray());
        Assert.That(code, Is.EqualTo(0), stderr + stdout);
        return (JsonObject)JsonNode.Parse(stdout)!;
    }

    [SetUp]
    public void Linux()
    {
        if (!PageResidency.Available) Assert.Ignore("page residency is measured with Linux's mincore");
    }

    [Test]
    public void Fp4GroupScalesAreSampledAndNothingStaysCached()
    {
        string dir = V4("sampled");
        long fp4Bytes = Scales(dir).Where(t => t.Name.Contains(".experts.")).Sum(t => t.ByteLength);
        Assert.That(fp4Bytes, Is.GreaterThan(10L << 20), "the cut replica still has FP4 scales far larger than the sample");
        PageResidency.Evict(dir);
        JsonObject r = Inspect(dir);
        long resident = PageResidency.ResidentInDir(dir);
        TestContext.Out.WriteLine($"FP4 scale bytes {fp4Bytes:N0}; inspect read {r["scale_check"]?["bytes_read"]}; resident after {resident:N0}, headers {HeaderBytes(dir):N0}");
        Assert.That(resident, Is.LessThan(HeaderBytes(dir) + (1L << 20)), "inspect leaves the scales it read (and read-ahead around them) in the page cache");
        int fp4Weights = r["fp4_weight_count"]!.GetValue<int>();
        Assert.That(r["scale_check"]?["tensors_sampled"]?.GetValue<int>(), Is.EqualTo(fp4Weights));
        Assert.That(r["scale_check"]!["bytes_read"]!.GetValue<long>(), Is.LessThan(fp4Bytes / 10));
    }

    [Test]
    public void FullScalesStreamsEveryScaleAndFindsANaNDeepInside()
    {
        string dir = V4("full");
        List<TensorInfo> all = Scales(dir);
        // a NaN in the middle of the largest FP4 group scale
        TensorInfo big = all.Where(t => t.Name.Contains(".experts.")).MaxBy(t => t.ByteLength)!;
        string file;
        long at;
        using (var ck = Checkpoint.Open(dir))
        {
            var loc = ck.Get(big.Name);
            file = loc.File.Path;
            at = loc.File.AbsoluteOffset(loc.Info) + big.ByteLength / 2 + 1;
        }
        using (var fs = new FileStream(file, FileMode.Open, FileAccess.Write)) { fs.Position = at; fs.WriteByte(0xFF); }
        PageResidency.Evict(dir);
        var (code, stdout, stderr) = CliRunner.Run("inspect", "--json", "--full-scales", dir);
        long resident = PageResidency.ResidentInDir(dir);
        Assert.That(code, Is.EqualTo(ExitCodes.Malformed), stderr);
        var r = (JsonObject)JsonNode.Parse(stdout)!;
        Assert.That(r["problems"]!.AsArray().Select(p => p!.GetValue<string>()), Has.Some.Contain(big.Name).And.Contain("NaN"));
        Assert.That(r["scale_check"]!["bytes_read"]!.GetValue<long>(), Is.EqualTo(all.Sum(t => t.ByteLength)));
        Assert.That(resident, Is.LessThan(HeaderBytes(dir) + (2L << 20)), "the full check drops what it streamed");
    }

    [Test]
    public void ScatteredSmallScalesLeaveNothingCached()
    {
        string dir = V3("scattered");
        int scales = Scales(dir).Count;
        Assert.That(scales, Is.GreaterThan(200));
        PageResidency.Evict(dir);
        JsonObject r = Inspect(dir);
        long resident = PageResidency.ResidentInDir(dir);
        TestContext.Out.WriteLine($"{scales} scales; resident after {resident:N0}, headers {HeaderBytes(dir):N0}");
        Assert.That(resident, Is.LessThan(HeaderBytes(dir) + (1L << 20)), "each small scale read through the map brings a read-ahead window with it");
        Assert.That(r["scale_check"]?["tensors_read"]?.GetValue<int>(), Is.EqualTo(scales));
    }
}
