using System.Text.Json.Nodes;
using Mtp.SafeTensors;
using Mtp.Tests.Shared;

namespace Mtp.Adapters.Tests;

/// <summary>--part i/n + --merge-index: split conversions give the single-run checkpoint, byte for byte.</summary>
[TestFixture]
public class PartsTests
{
    static long ShardLimit(string fx) => Checkpoint.Open(fx) is var c ? Math.Max(1, c.TotalTensorBytes / 5) + Dispose(c) : 0;
    static long Dispose(IDisposable d) { d.Dispose(); return 0; }

    static void AssertSameCheckpoint(string single, string merged)
    {
        var v = Verifier.Compare(single, merged);
        Assert.That(v.Identical, Is.True, () => v.ToJson().ToJsonString());
        var files = Directory.GetFiles(single).Select(f => Path.GetFileName(f)).Where(f => f != Converter.ReportFileName).Order().ToList();
        Assert.That(Directory.GetFiles(merged).Select(Path.GetFileName).Where(f => f != Converter.ReportFileName).Order().ToList(), Is.EqualTo(files));
        Assert.That(files.Count(f => f!.EndsWith(".safetensors")), Is.GreaterThanOrEqualTo(3), "the fixture should span at least 3 shards");
        foreach (string f in files)
            Assert.That(File.ReadAllBytes(Path.Combine(merged, f!)), Is.EqualTo(File.ReadAllBytes(Path.Combine(single, f!))), f);
        Assert.That(Directory.Exists(Path.Combine(merged, Converter.PartsDirName)), Is.False);
        var report = JsonNode.Parse(File.ReadAllText(Path.Combine(merged, Converter.ReportFileName)))!;
        var one = JsonNode.Parse(File.ReadAllText(Path.Combine(single, Converter.ReportFileName)))!;
        Assert.That(report["parts"]!["count"]!.GetValue<int>(), Is.EqualTo(3));
        Assert.That(report["tensors"]!.ToJsonString(), Is.EqualTo(one["tensors"]!.ToJsonString()));
        Assert.That(report["requantized"]?.ToJsonString(), Is.EqualTo(one["requantized"]?.ToJsonString()));
    }

    [TestCase("deepseek-v4-flash")]
    [TestCase("deepseek-v3")]
    public void ThreePartsPlusMergeEqualOneRunBothDirections(string fixture)
    {
        string fx = Fx.Dir(fixture);
        string tmp = RepoPaths.NewTempDir("parts-" + fixture);
        long limit = ShardLimit(fx);
        var o = new ConvertOptions { MaxShardBytes = limit };

        string single = Path.Combine(tmp, "native-1"), split = Path.Combine(tmp, "native-3");
        Converter.ToNative(fx, single, o);
        foreach (int i in new[] { 3, 1, 2 }) Converter.ToNative(fx, split, o with { Part = (i, 3) });
        Assert.That(File.Exists(Path.Combine(split, Converter.ReportFileName)), Is.False, "not complete before the merge");
        var m = Converter.MergeParts(split);
        Assert.That(m.Shards.Count, Is.GreaterThanOrEqualTo(3));
        AssertSameCheckpoint(single, split);

        // Back to HF against the reference, also in 3 parts (the reference's shard layout; re-sharded without it).
        string hf1 = Path.Combine(tmp, "hf-1"), hf3 = Path.Combine(tmp, "hf-3");
        var h = new ConvertOptions { MaxShardBytes = limit };
        Converter.ToHf(single, hf1, h);
        for (int i = 1; i <= 3; i++) Converter.ToHf(split, hf3, h with { Part = (i, 3) });
        Converter.MergeParts(hf3);
        AssertSameCheckpoint(hf1, hf3);
        Directory.Delete(tmp, true);
    }

    [Test]
    public void MergeRefusesWhenAPartIsMissing()
    {
        string fx = Fx.Dir("deepseek-v4-flash");
        string tmp = RepoPaths.NewTempDir("parts-missing");
        string split = Path.Combine(tmp, "out");
        var o = new ConvertOptions { MaxShardBytes = ShardLimit(fx) };
        Converter.ToNative(fx, split, o with { Part = (1, 3) });
        Converter.ToNative(fx, split, o with { Part = (3, 3) });
        var e = Assert.Throws<AdapterException>(() => Converter.MergeParts(split))!;
        Assert.That(e.Kind, Is.EqualTo(AdapterErrorKind.Inconsistent));
        Assert.That(e.Message, Does.Contain("2/3").And.Contain("missing").And.Not.Contain("\n"));
        Assert.That(File.Exists(Path.Combine(split, Converter.ReportFileName)), Is.False);

        // A part converted with other options: a different plan.
        string other = Path.Combine(tmp, "other");
        Converter.ToNative(fx, other, o with { Part = (1, 3) });
        Converter.ToNative(fx, other, o with { Part = (3, 3) });
        Converter.ToNative(fx, other, o with { Part = (2, 3), DType = DType.F32 });
        var d = Assert.Throws<AdapterException>(() => Converter.MergeParts(other))!;
        Assert.That(d.Message, Does.Contain("different plans"));

        // Fixed: rerun part 2 with the same options; a shard of the wrong size is refused too.
        Converter.ToNative(fx, split, o with { Part = (2, 3) });
        string shard = Directory.GetFiles(split, "*.safetensors").Order().First();
        byte[] keep = File.ReadAllBytes(shard);
        File.WriteAllBytes(shard, keep[..^1]);
        var s = Assert.Throws<AdapterException>(() => Converter.MergeParts(split))!;
        Assert.That(s.Message, Does.Contain(Path.GetFileName(shard)));
        File.WriteAllBytes(shard, keep);
        Converter.MergeParts(split);
        Assert.That(File.Exists(Path.Combine(split, Converter.ReportFileName)), Is.True);
        Assert.Throws<AdapterException>(() => Converter.MergeParts(split));
        Directory.Delete(tmp, true);
    }

    [Test]
    public void MergeNamesAManifestWithAMissingOrMistypedField()
    {
        string fx = Fx.Dir("deepseek-v3");
        string tmp = RepoPaths.NewTempDir("parts-malformed");
        string split = Path.Combine(tmp, "out");
        var o = new ConvertOptions { MaxShardBytes = ShardLimit(fx) };
        for (int i = 1; i <= 2; i++) Converter.ToNative(fx, split, o with { Part = (i, 2) });
        string manifest = Path.Combine(split, Converter.PartsDirName, Converter.PartManifestName(2, 2));
        string good = File.ReadAllText(manifest);
        foreach (string field in new[] { "plan_hash", "shards" })
        {
            var doc = JsonNode.Parse(good)!.AsObject();
            doc.Remove(field);
            File.WriteAllText(manifest, doc.ToJsonString());
            var e = Assert.Throws<AdapterException>(() => Converter.MergeParts(split))!;
            Assert.That(e.Kind, Is.EqualTo(AdapterErrorKind.Malformed), e.Message);
            Assert.That(e.Message, Does.Contain(manifest).And.Contain(field).And.Not.Contain("\n"));
        }
        var typed = JsonNode.Parse(good)!.AsObject();
        typed["part"] = "two";
        File.WriteAllText(manifest, typed.ToJsonString());
        Assert.That(Assert.Throws<AdapterException>(() => Converter.MergeParts(split))!.Kind, Is.EqualTo(AdapterErrorKind.Malformed));
        File.WriteAllText(manifest, good);
        Converter.MergeParts(split);
        Assert.That(File.Exists(Path.Combine(split, Converter.ReportFileName)), Is.True);
        Directory.Delete(tmp, true);
    }

    [Test]
    public void PartitionIsContiguousAndCoversEveryShard()
    {
        for (int shards = 1; shards <= 40; shards++)
            for (int n = 1; n <= 12; n++)
            {
                var parts = Enumerable.Range(0, shards).Select(k => Converter.PartOfShard(k, shards, n)).ToList();
                Assert.That(parts, Is.Ordered);
                Assert.That(parts.All(p => p >= 1 && p <= n), Is.True);
                if (shards >= n) Assert.That(parts.Distinct().Count(), Is.EqualTo(n));
            }
    }
}

/// <summary>The row-block pipeline: tiny blocks and a tiny memory budget give the same bytes as the defaults.</summary>
[TestFixture]
public class PartsPipelineTests
{
    [TestCase("deepseek-v4-flash")]
    [TestCase("deepseek-v3")]
    [TestCase("qwen3.5-moe-fp8")]
    public void TinyRowBlocksAndBudgetGiveIdenticalBytes(string fixture)
    {
        string fx = Fx.Dir(fixture);
        string tmp = RepoPaths.NewTempDir("blocks-" + fixture);
        foreach (var dt in new DType?[] { null, DType.F32 })
        {
            string a = Path.Combine(tmp, $"a{dt}"), b = Path.Combine(tmp, $"b{dt}");
            Converter.ToNative(fx, a, new ConvertOptions { DType = dt });
            Converter.ToNative(fx, b, new ConvertOptions { DType = dt, BlockBytes = 512, MaxMemoryBytes = 1, Threads = 3 });
            foreach (string f in Directory.GetFiles(a, "*.safetensors"))
                Assert.That(File.ReadAllBytes(Path.Combine(b, Path.GetFileName(f))), Is.EqualTo(File.ReadAllBytes(f)), f);
            string back = Path.Combine(tmp, $"back{dt}");
            Converter.ToHf(b, back, new ConvertOptions { Reference = fx, BlockBytes = 256, MaxMemoryBytes = 1 });
            Assert.That(Verifier.Compare(fx, back).Identical, Is.True);
        }
        Directory.Delete(tmp, true);
    }

    [TestCase("deepseek-v4-flash")]
    [TestCase("qwen3.5-moe")]
    public void StreamingPastThePageCacheGivesIdenticalBytes(string fixture)
    {
        string fx = Fx.Dir(fixture);
        string tmp = RepoPaths.NewTempDir("cache-" + fixture);
        string direct = Path.Combine(tmp, "direct"), cached = Path.Combine(tmp, "cached");
        Converter.ToNative(fx, direct, new ConvertOptions { DropBehind = true, MaxShardBytes = 20_000 });
        Converter.ToNative(fx, cached, new ConvertOptions { DropBehind = false, MaxShardBytes = 20_000 });
        var files = Directory.GetFiles(direct, "*.safetensors");
        Assert.That(files, Has.Length.GreaterThan(1), "several shards");
        foreach (string f in files)
            Assert.That(File.ReadAllBytes(Path.Combine(cached, Path.GetFileName(f))), Is.EqualTo(File.ReadAllBytes(f)), f);
        foreach (bool drop in new[] { true, false })
        {
            string back = Path.Combine(tmp, $"back-{drop}");
            Converter.ToHf(direct, back, new ConvertOptions { Reference = fx, DropBehind = drop });
            Assert.That(Verifier.Compare(fx, back).Identical, Is.True, $"DropBehind={drop}");
        }
        Directory.Delete(tmp, true);
    }
}
