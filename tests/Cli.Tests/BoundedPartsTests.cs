using System.IO.MemoryMappedFiles;
using System.Runtime.InteropServices;
using System.Text.Json.Nodes;
using Mtp.Adapters;
using Mtp.SafeTensors;
using Mtp.Tests.Shared;

namespace Mtp.Cli.Tests;

/// <summary>
/// convert --part at bounded memory: the MTP layer's embedding/head copies are compared with positioned reads that leave
/// nothing in the page cache, once per conversion (later parts take the result from a part manifest); scales whose weights
/// live in another part's shards are recomputed with the weights read ahead and dropped after. Measured with mincore over
/// the source files (what a command left in the page cache), so each check fails where the bytes go through the map.
/// </summary>
public class BoundedPartsTests
{
    [DllImport("libc", SetLastError = true)] static extern int mincore(nint addr, nuint length, byte[] vec);

    static readonly long Page = Environment.SystemPageSize;

    /// <summary>Bytes of [offset, offset + length) of <paramref name="path"/> in the page cache (whole pages touching the range).</summary>
    static long ResidentRange(string path, long offset, long length)
    {
        long fileLength = new FileInfo(path).Length;
        using var map = MemoryMappedFile.CreateFromFile(path, FileMode.Open, null, 0, MemoryMappedFileAccess.Read);
        using var view = map.CreateViewAccessor(0, 0, MemoryMappedFileAccess.Read);
        var vec = new byte[(fileLength + Page - 1) / Page];
        nint addr = view.SafeMemoryMappedViewHandle.DangerousGetHandle() + (nint)view.PointerOffset;
        if (mincore(addr, (nuint)fileLength, vec) != 0) throw new IOException($"mincore failed: errno {Marshal.GetLastPInvokeError()}");
        long count = 0;
        for (long p = offset / Page; p <= (offset + length - 1) / Page; p++) if ((vec[p] & 1) != 0) count++;
        return count * Page;
    }

    static long ResidentTensor(string dir, string name)
    {
        using var c = Checkpoint.Open(dir);
        var t = c.Get(name);
        return ResidentRange(t.File.Path, t.File.AbsoluteOffset(t.Info), t.Info.ByteLength);
    }

    static string Synth(string tag, params string[] args)
    {
        string dir = Path.Combine(RepoPaths.NewTempDir("bounded-parts-" + tag), "hf");
        var (code, stdout, stderr) = CliRunner.Run(new[] { "synth" }.Concat(args).Append(dir).ToArray());
        Assert.That(code, Is.EqualTo(0), stderr + stdout);
        return dir;
    }

    static void RequireLinux() { if (!PageResidency.Available) Assert.Ignore("needs Linux (mincore, posix_fadvise) to count page-cache residency"); }

    [Test]
    public void TiedCopiesAreComparedWithoutFillingTheCacheAndOncePerConversion()
    {
        RequireLinux();
        // 4 MB embedding and head (vocab 8192 x hidden 256, BF16), each MTP copy in a shard of its own.
        string hf = Synth("tied", "--family", "deepseek-v3", "--hidden", "256", "--vocab", "8192", "--experts", "4", "--max-shard-size", "3MB");
        string[] copies = { "model.layers.3.embed_tokens.weight", "model.layers.3.shared_head.head.weight" };
        string parts = Path.Combine(Path.GetDirectoryName(hf)!, "native-parts"), single = Path.Combine(Path.GetDirectoryName(hf)!, "native-1");
        var o = new ConvertOptions { MaxShardBytes = 3_000_000 };
        Converter.ToNative(hf, single, o);

        PageResidency.Evict(hf);
        var logs = new List<string>();
        Converter.ToNative(hf, parts, o with { Part = (1, 2) }, new ConvertProgress { Log = logs.Add });
        foreach (string c in copies)
            Assert.That(ResidentTensor(hf, c), Is.LessThanOrEqualTo(2 * Page), $"{c}: compared through the page cache and left there");
        var manifest = JsonNode.Parse(File.ReadAllText(Path.Combine(parts, Converter.PartsDirName, Converter.PartManifestName(1, 2))))!;
        var checks = manifest["tied_checks"]!.AsArray();
        Assert.That(checks.Select(x => x!["copy"]!.GetValue<string>()), Is.EquivalentTo(copies));
        Assert.That(checks.All(x => x!["same"]!.GetValue<bool>()), Is.True, "synth writes the MTP copies equal to the main tensors");

        // Part 2 without drop-behind: a comparison would leave the copies cached; taken from part 1's manifest it reads nothing.
        PageResidency.Evict(hf);
        logs.Clear();
        Converter.ToNative(hf, parts, o with { Part = (2, 2), DropBehind = false }, new ConvertProgress { Log = logs.Add });
        Assert.That(logs, Has.Some.Contains("2 taken from an earlier part's manifest"), string.Join("\n", logs));
        // (Opening the shards reads their headers, and the kernel's read-ahead may bring in the first pages after them.)
        foreach (string c in copies)
            Assert.That(ResidentTensor(hf, c), Is.LessThan(1L << 20), $"{c}: read again by part 2");
        Converter.MergeParts(parts);
        var v = Verifier.Compare(single, parts);
        Assert.That(v.Identical, Is.True, () => v.ToJson().ToJsonString());
    }

    /// <summary>The largest file-backed resident set (RssFile) of this process while <paramref name="run"/> runs, above its start.</summary>
    static long PeakRssFileGrowth(Action run)
    {
        static long RssFile() => File.ReadLines("/proc/self/status").Where(l => l.StartsWith("RssFile:")).Select(l => long.Parse(l.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1]) * 1024).First();
        long start = RssFile(), peak = start;
        bool done = false;
        var sampler = new Thread(() => { while (!Volatile.Read(ref done)) { peak = Math.Max(peak, RssFile()); Thread.Sleep(1); } });
        sampler.Start();
        try { run(); }
        finally { Volatile.Write(ref done, true); sampler.Join(); }
        return Math.Max(peak, RssFile()) - start;
    }

    [Test]
    public void ScalesOfWeightsInOtherPartsAreRecomputedWithTheirWeightsUnmappedAfter()
    {
        RequireLinux();
        // About 200 MB of BF16 experts in the training layout (4 layers x 32 experts x 3 x 512 KB).
        string hf = Synth("orphan", "--family", "qwen3.5", "--quant", "fp8", "--hidden", "1024", "--experts", "32", "--max-shard-size", "64MB");
        string root = Path.GetDirectoryName(hf)!;
        string native = Path.Combine(root, "native");
        Converter.ToNative(hf, native, new ConvertOptions());

        // The reference with every scale in its last shard, as in the Qwen3.5 FP8 release: the part writing that shard holds
        // only scales of weights written by the other part.
        string reference = Path.Combine(root, "reference");
        Directory.CreateDirectory(reference);
        List<(string Name, byte[] Bytes, TensorSpec Spec)> all;
        using (var c = Checkpoint.Open(hf))
            all = c.Tensors.Select(t => (t.Name, t.File.GetData(t.Info).Slice(0, checked((int)t.Info.ByteLength)).ToArray(), new TensorSpec(t.Name, t.Info.DType, t.Info.Shape))).ToList();
        var scales = all.Where(t => t.Name.EndsWith("_scale_inv", StringComparison.Ordinal)).ToList();
        var rest = all.Where(t => !t.Name.EndsWith("_scale_inv", StringComparison.Ordinal)).ToList();
        Assert.That(scales.Count, Is.GreaterThan(32), "the FP8 fixture has block scales");
        string s1 = "model-00001-of-00002.safetensors", s2 = "model-00002-of-00002.safetensors";
        SafeTensorsWriter.WriteFile(Path.Combine(reference, s1), rest.Select(t => (t.Spec, t.Bytes)).ToList());
        SafeTensorsWriter.WriteFile(Path.Combine(reference, s2), scales.Select(t => (t.Spec, t.Bytes)).ToList());
        ShardIndex.Write(Path.Combine(reference, ShardIndex.FileName), all.Sum(t => (long)t.Bytes.Length),
            rest.Select(t => new KeyValuePair<string, string>(t.Name, s1)).Concat(scales.Select(t => new KeyValuePair<string, string>(t.Name, s2))), null);
        File.Copy(Path.Combine(hf, "config.json"), Path.Combine(reference, "config.json"));
        all.Clear();

        long expertBytes;
        using (var n = Checkpoint.Open(native)) expertBytes = n.Tensors.Where(t => t.Name.Contains(".experts.")).Sum(t => t.Info.ByteLength);
        string outDir = Path.Combine(root, "hf-parts");
        long growth = PeakRssFileGrowth(() => Converter.ToHf(native, outDir, new ConvertOptions { Reference = reference, Part = (2, 2), Threads = 2 }));
        Assert.That(growth, Is.LessThan(expertBytes / 4),
            $"part 2/2 (scales only) kept up to {growth:N0} bytes of mapped weights resident (experts: {expertBytes:N0})");
        // The scales are the reference's, byte for byte (an unchanged roundtrip).
        using (var written = SafeTensorsFile.Open(Path.Combine(outDir, s2)))
            foreach (var s in scales) Assert.That(written.GetBytes(s.Name).ToArray(), Is.EqualTo(s.Bytes), s.Name);
    }

    [Test]
    public void APartBeyondTheShardCountIsAUsageError()
    {
        string fx = Path.Combine(RepoPaths.Fixtures, "deepseek-v3");
        string outDir = Path.Combine(RepoPaths.NewTempDir("bounded-parts-beyond"), "out");
        var (code, stdout, stderr) = CliRunner.Run("convert", fx, outDir, "--to", "native", "--part", "9/9", "-q");
        Assert.That(code, Is.EqualTo(ExitCodes.Usage), stdout + stderr);
        var lines = stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.That(lines, Has.Length.EqualTo(1), stderr);
        Assert.That(lines[0], Does.Contain("--part 9/9").And.Contain("shard"));
        Assert.That(Directory.Exists(Path.Combine(outDir, Converter.PartsDirName)) && Directory.GetFiles(Path.Combine(outDir, Converter.PartsDirName)).Length > 0, Is.False);
    }

    [Test]
    public void AStackedTensorOverTheShardLimitGetsAShardOfItsOwnAndAWarning()
    {
        string fx = Path.Combine(RepoPaths.Fixtures, "deepseek-v3");
        string root = RepoPaths.NewTempDir("bounded-parts-oversize");
        long largestStack;
        string stacked = Path.Combine(root, "stacked");
        Assert.That(CliRunner.Run("convert", fx, stacked, "--to", "native").Code, Is.EqualTo(0));
        using (var c = Checkpoint.Open(stacked)) largestStack = c.Tensors.Where(t => t.Name.EndsWith(".gate_up_proj")).Max(t => t.Info.ByteLength);

        string limit = (largestStack / 2).ToString();
        string outDir = Path.Combine(root, "split");
        var (code, stdout, stderr) = CliRunner.Run("convert", fx, outDir, "--to", "native", "--max-shard-size", limit);
        Assert.That(code, Is.EqualTo(0), stderr);
        var warnings = JsonNode.Parse(File.ReadAllText(Path.Combine(outDir, Converter.ReportFileName)))!["warnings"]!.AsArray();
        Assert.That(warnings, Is.Not.Empty);
        using (var c = Checkpoint.Open(outDir))
            foreach (var w in warnings)
            {
                var file = c.Files.Single(f => Path.GetFileName(f.Path) == w!["shard"]!.GetValue<string>());
                Assert.That(file.Tensors, Has.Count.EqualTo(1), "an oversized tensor has its shard to itself");
                Assert.That(w!["bytes"]!.GetValue<long>(), Is.GreaterThan(long.Parse(limit)));
            }
        Assert.That(warnings.Select(w => w!["message"]!.GetValue<string>()), Has.Some.Contains("--expert-layout per-expert"));
        Assert.That(stderr, Does.Contain("over --max-shard-size"));
        if (warnings.Count > 3) Assert.That(stderr, Does.Contain($"all {warnings.Count} listed under 'warnings'"));

        // One tensor per expert fits the same limit: no warning.
        string perExpert = Path.Combine(root, "per-expert");
        var pe = CliRunner.Run("convert", fx, perExpert, "--to", "native", "--max-shard-size", limit, "--expert-layout", "per-expert");
        Assert.That(pe.Code, Is.EqualTo(0), pe.Err);
        var peWarnings = JsonNode.Parse(File.ReadAllText(Path.Combine(perExpert, Converter.ReportFileName)))!["warnings"]!.AsArray();
        Assert.That(peWarnings.Select(w => w!["tensor"]!.GetValue<string>()), Has.None.Contains(".experts."));
    }
}
