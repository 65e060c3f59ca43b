using Mtp.SafeTensors.IO;
using Mtp.Tests.Shared;

namespace Mtp.SafeTensors.Tests;

/// <summary>Every <see cref="WriteMode"/> writes the same bytes: staging-buffer edges, the unaligned tail, reserve and truncate.</summary>
public class SequentialFileTests
{
    string _dir = "";

    [SetUp] public void SetUp() => _dir = RepoPaths.NewTempDir("seqfile");
    [TearDown] public void TearDown() => Directory.Delete(_dir, true);

    static byte[] Random(long n, int seed) => WriterRoundTripTests.Pattern(n, seed);

    // Chunk sizes chosen to straddle the 8 MiB staging buffers and the 16 MiB write-back chunks, ending off any 4 KiB boundary.
    static readonly int[] Chunks = { 7, 4096, 3 << 20, (8 << 20) - 5, 1, 9 << 20, 12345, 16 << 20, 4095 };

    [TestCase(WriteMode.Cached)]
    [TestCase(WriteMode.WriteBehind)]
    [TestCase(WriteMode.Direct)]
    public void WritesExactlyTheAppendedBytes(WriteMode mode)
    {
        byte[] all = Random(Chunks.Sum(), 1);
        string p = Path.Combine(_dir, "f.bin");
        using (var f = SequentialFile.Create(p, mode))
        {
            f.Reserve(all.Length + 100_000); // over-reserved: Complete truncates to what was written
            int at = 0;
            foreach (int n in Chunks)
            {
                f.Write(all.AsSpan(at, n));
                at += n;
                Assert.That(f.Position, Is.EqualTo(at));
            }
            f.Complete();
        }
        byte[] back = File.ReadAllBytes(p);
        Assert.That(back.Length, Is.EqualTo(all.Length));
        Assert.That(back.AsSpan().SequenceEqual(all), Is.True, "bytes differ");
    }

    [Test]
    public void DirectModeIsUsedOnThisDiskOrSaysItFellBack()
    {
        using var f = SequentialFile.Create(Path.Combine(_dir, "d.bin"), WriteMode.Direct);
        // Linux x64/arm64 on ext4/xfs takes O_DIRECT; tmpfs and other platforms fall back to write-behind.
        Assert.That(f.Mode, Is.EqualTo(WriteMode.Direct).Or.EqualTo(WriteMode.WriteBehind));
        TestContext.Out.WriteLine($"{Path.GetTempPath()}: direct mode gives {f.Mode}");
        f.Complete();
    }

    [Test]
    public void EmptyFileCompletesEmpty()
    {
        foreach (WriteMode mode in Enum.GetValues<WriteMode>())
        {
            string p = Path.Combine(_dir, $"e-{mode}.bin");
            using (var f = SequentialFile.Create(p, mode)) f.Complete();
            Assert.That(new FileInfo(p).Length, Is.EqualTo(0), mode.ToString());
        }
    }

    [Test]
    public void SafeTensorsWriterGivesIdenticalFilesInEveryMode()
    {
        var specs = new List<TensorSpec> { new("a", DType.BF16, new long[] { 3, 1_500_001 }), new("b", DType.F8_E4M3, new long[] { 5, 7 }), new("c", DType.F32, new long[] { 0 }) };
        var data = specs.Select((s, i) => Random(s.ByteLength, 10 + i)).ToList();
        var files = new List<byte[]>();
        foreach (WriteMode mode in Enum.GetValues<WriteMode>())
        {
            string p = Path.Combine(_dir, $"m-{mode}.safetensors");
            using (var w = SafeTensorsWriter.Create(p, specs, new Dictionary<string, string> { ["format"] = "pt" }, mode))
            {
                w.Append(data[0].AsSpan(0, 1_000_003));
                w.Append(data[0].AsSpan(1_000_003));
                w.Write("b", data[1]);
                w.Complete();
            }
            files.Add(File.ReadAllBytes(p));
            using var f = SafeTensorsFile.Open(p);
            Assert.That(f.GetBytes("a").SequenceEqual(data[0]), Is.True, mode.ToString());
        }
        Assert.That(files[1], Is.EqualTo(files[0]));
        Assert.That(files[2], Is.EqualTo(files[0]));
    }

    [Test]
    public void AbandonedDirectWriterLeavesNoFile()
    {
        string p = Path.Combine(_dir, "x.safetensors");
        using (var w = SafeTensorsWriter.Create(p, new[] { new TensorSpec("a", DType.U8, new long[] { 10 << 20 }) }, null, WriteMode.Direct))
            w.Append(new byte[9 << 20]); // disposed incomplete
        Assert.That(Directory.GetFiles(_dir), Is.Empty);
    }

    [Test]
    public void PageCacheHintsLeaveContentsAloneAndNeverThrow()
    {
        string p = Path.Combine(_dir, "h.bin");
        byte[] all = Random(5 << 20, 3);
        File.WriteAllBytes(p, all);
        using (var h = File.OpenHandle(p, FileMode.Open, FileAccess.ReadWrite))
        {
            PageCache.WillNeed(h, 0, all.Length);
            PageCache.StartWriteback(h, 0, all.Length);
            PageCache.WritebackAndDrop(h, 4097, 1 << 20);
            PageCache.Drop(h, 0, all.Length);
            PageCache.Drop(h, 100, 10); // inside one page: nothing to drop
            PageCache.WillNeed(h, 0, 0);
        }
        var closed = File.OpenHandle(p);
        closed.Dispose();
        Assert.DoesNotThrow(() => PageCache.Drop(closed, 0, 4096));
        Assert.That(File.ReadAllBytes(p), Is.EqualTo(all));
    }
}
