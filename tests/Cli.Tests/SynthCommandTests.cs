using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using Mtp.SafeTensors;
using Mtp.Tests.Shared;

namespace Mtp.Cli.Tests;

public class SynthCommandTests
{
    // (family args, matching fixture, expected quantization schemes' prefixes)
    static readonly object[] Families =
    {
        new object[] { new[] { "--family", "deepseek-v3" }, "deepseek-v3", new[] { "FP8 E4M3 block 128x128, scale F32" } },
        new object[] { new[] { "--family", "deepseek-v4" }, "deepseek-v4-flash", new[] { "FP8 E4M3 block 128x128, scale F8_E8M0", "FP4 E2M1 packed, scale F8_E8M0 per 32 columns" } },
        new object[] { new[] { "--family", "qwen3.5" }, "qwen3.5-moe", new[] { "none" } },
        new object[] { new[] { "--family", "qwen3.5", "--quant", "fp8" }, "qwen3.5-moe-fp8", new[] { "FP8 E4M3 block 128x128, scale BF16" } },
    };

    static string Synth(string tag, params string[] args)
    {
        string dir = Path.Combine(RepoPaths.NewTempDir("synth-" + tag), "out");
        var (code, stdout, stderr) = CliRunner.Run(new[] { "synth" }.Concat(args).Append(dir).ToArray());
        Assert.That(code, Is.EqualTo(0), stderr);
        Assert.That(stdout, Does.Contain("tensors").And.Contain("MB/s"));
        return dir;
    }

    static JsonObject Inspect(string dir)
    {
        var (code, stdout, stderr) = CliRunner.Run("inspect", "--json", dir);
        Assert.That(code, Is.EqualTo(0), stderr + stdout);
        return (JsonObject)JsonNode.Parse(stdout)!;
    }

    static SortedSet<string> Patterns(string dir)
    {
        using var ck = Checkpoint.Open(dir);
        return new SortedSet<string>(ck.Tensors.Select(t => Regex.Replace(t.Name, @"\d+", "#")), StringComparer.Ordinal);
    }

    [TestCaseSource(nameof(Families))]
    public void TinyCheckpointIsAcceptedByInspectAndHasTheFixturesNamePatterns(string[] family, string fixture, string[] quant)
    {
        string dir = Synth(fixture, family.Append("--seed").Append("7").ToArray());
        JsonObject got = Inspect(dir);
        var manifest = (JsonObject)JsonNode.Parse(File.ReadAllText(Path.Combine(RepoPaths.Fixtures, "manifest.json")))!["fixtures"]![fixture]!;
        Assert.That((string)got["family"]!, Is.EqualTo(family[1]));
        Assert.That((JsonArray)got["problems"]!, Is.Empty);
        Assert.That((JsonArray)got["warnings"]!, Is.Empty);
        Assert.That((int)got["mtp_depth"]!, Is.EqualTo(1));
        Assert.That((int)got["config_mtp_depth"]!, Is.EqualTo(1));
        Assert.That((string)got["expert_layout"]!, Is.EqualTo((string)manifest["expert_layout"]!));
        var schemes = ((JsonArray)got["quantization"]!).Select(q => (string)q!).ToList();
        Assert.That(schemes, Has.Count.EqualTo(quant.Length));
        for (int i = 0; i < quant.Length; i++) Assert.That(schemes[i], Does.StartWith(quant[i]));
        // same dtypes and tensor count as the fixture (the tiny shapes mirror the fixture's layer mix)
        var dtypes = ((JsonObject)got["dtype_counts"]!).ToDictionary(kv => kv.Key, kv => (int)kv.Value!);
        var want = ((JsonObject)manifest["dtype_counts"]!).ToDictionary(kv => kv.Key, kv => (int)kv.Value!);
        Assert.That(dtypes, Is.EquivalentTo(want));
        Assert.That(Patterns(dir), Is.EqualTo(Patterns(Path.Combine(RepoPaths.Fixtures, fixture))));
    }

    [TestCaseSource(nameof(Families))]
    public void MtpDepthTwoIsWrittenAndDeclared(string[] family, string fixture, string[] quant)
    {
        string dir = Synth(fixture + "-d2", family.Concat(new[] { "--mtp-depth", "2", "--layers", "4", "--experts", "3" }).ToArray());
        JsonObject got = Inspect(dir);
        Assert.That((JsonArray)got["problems"]!, Is.Empty);
        Assert.That((int)got["mtp_depth"]!, Is.EqualTo(2));
        Assert.That((int)got["num_hidden_layers"]!, Is.EqualTo(4));
    }

    [Test]
    public void SameSeedGivesIdenticalFilesAndAnotherSeedDiffers()
    {
        string[] args = { "--family", "deepseek-v4", "--hidden", "256", "--experts", "8", "--max-shard-size", "2MB" };
        string a = Synth("seed-a", args.Concat(new[] { "--seed", "42" }).ToArray());
        string b = Synth("seed-b", args.Concat(new[] { "--seed", "42" }).ToArray());
        string c = Synth("seed-c", args.Concat(new[] { "--seed", "43" }).ToArray());
        var files = Directory.GetFiles(a).Select(Path.GetFileName).Order(StringComparer.Ordinal).ToList();
        Assert.That(files, Has.Count.GreaterThan(3), "several shards, an index and config.json");
        Assert.That(files, Does.Contain(ShardIndex.FileName));
        Assert.That(Directory.GetFiles(b).Select(Path.GetFileName).Order(StringComparer.Ordinal), Is.EqualTo(files));
        bool anyDiffers = false;
        foreach (string? f in files)
        {
            Assert.That(File.ReadAllBytes(Path.Combine(b, f!)), Is.EqualTo(File.ReadAllBytes(Path.Combine(a, f!))), f);
            if (f!.EndsWith(".safetensors", StringComparison.Ordinal))
                anyDiffers |= !File.ReadAllBytes(Path.Combine(c, f)).AsSpan().SequenceEqual(File.ReadAllBytes(Path.Combine(a, f)));
        }
        Assert.That(anyDiffers, "another seed gives other data");
        Assert.That((JsonArray)Inspect(a)["problems"]!, Is.Empty);
    }

    [Test]
    public void DataIsValid()
    {
        string dir = Synth("valid", "--family", "deepseek-v4", "--hidden", "128", "--experts", "6", "--seed", "3");
        using var ck = Checkpoint.Open(dir);
        foreach (var t in ck.Tensors)
        {
            ReadOnlySpan<byte> bytes = t.File.GetBytes(t.Info);
            switch (t.Info.DType)
            {
                case DType.F8_E4M3:
                    Assert.That(bytes.IndexOfAny((byte)0x7F, (byte)0xFF), Is.EqualTo(-1), t.Name);
                    break;
                case DType.F8_E8M0:
                    foreach (byte x in bytes) Assert.That(x, Is.InRange(110, 125), t.Name);
                    break;
                case DType.I32:
                    for (int i = 0; i < bytes.Length; i += 4) Assert.That(BitConverter.ToInt32(bytes[i..]), Is.InRange(0, 5), t.Name);
                    break;
                case DType.F32:
                    for (int i = 0; i < bytes.Length; i += 4) Assert.That(float.IsFinite(BitConverter.ToSingle(bytes[i..])), t.Name);
                    break;
                case DType.BF16:
                    for (int i = 0; i < bytes.Length; i += 2)
                    {
                        float v = BitConverter.UInt32BitsToSingle((uint)BitConverter.ToUInt16(bytes[i..]) << 16);
                        Assert.That(float.IsFinite(v) && Math.Abs(v) < 4, t.Name);
                    }
                    break;
            }
        }
    }

    [TestCase("deepseek-v3")]
    [TestCase("deepseek-v4")]
    [TestCase("qwen3.5")]
    public void SizeLandsWithinTenPercent(string family)
    {
        string dir = Synth("size-" + family, "--family", family, "--size", "30MB");
        JsonObject got = Inspect(dir);
        Assert.That((JsonArray)got["problems"]!, Is.Empty);
        Assert.That((long)got["total_bytes"]!, Is.InRange(27_000_000L, 33_000_000L));
    }

    [Test]
    public void NonEmptyOutputWithoutForceFailsAndLeavesItUntouched()
    {
        string dir = RepoPaths.NewTempDir("synth-exists");
        File.WriteAllText(Path.Combine(dir, "keep.txt"), "mine");
        var (code, _, stderr) = CliRunner.Run("synth", "--family", "deepseek-v3", dir);
        Assert.That(code, Is.EqualTo(2));
        Assert.That(stderr, Does.Contain("--force"));
        Assert.That(Directory.GetFileSystemEntries(dir).Select(Path.GetFileName), Is.EqualTo(new[] { "keep.txt" }));
        Assert.That(File.ReadAllText(Path.Combine(dir, "keep.txt")), Is.EqualTo("mine"));
        Assert.That(Directory.GetFileSystemEntries(Path.GetDirectoryName(dir)!).Where(p => p.Contains(".partial-")), Is.Empty);

        (code, _, stderr) = CliRunner.Run("synth", "--family", "deepseek-v3", "--force-any", dir);
        Assert.That(code, Is.EqualTo(0), stderr);
        Assert.That(File.Exists(Path.Combine(dir, "keep.txt")), Is.False);
        Assert.That((JsonArray)Inspect(dir)["problems"]!, Is.Empty);
    }

    [TestCase("--family", "llama")]
    [TestCase("--family", "deepseek-v3", "--quant", "fp8")]
    [TestCase("--family", "deepseek-v4", "--hidden", "100")]
    [TestCase("--family", "deepseek-v3", "--size", "lots")]
    [TestCase("--family", "qwen3.5", "--layers", "0")]
    public void BadArgumentsAreUsageErrors(params string[] args)
    {
        string dir = Path.Combine(RepoPaths.NewTempDir("synth-bad"), "out");
        var (code, _, stderr) = CliRunner.Run(new[] { "synth" }.Concat(args).Append(dir).ToArray());
        Assert.That(code, Is.EqualTo(2), stderr);
        Assert.That(Directory.Exists(dir), Is.False);
    }
}
