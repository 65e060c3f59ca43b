using Mtp.Tests.Shared;

namespace Mtp.SafeTensors.Tests;

/// <summary>Positioned reads of a tensor's bytes and the chunked copy built on them.</summary>
public class ReadAtTests
{
    string _dir = "";

    [SetUp] public void SetUp() => _dir = RepoPaths.NewTempDir("st-readat");
    [TearDown] public void TearDown() => Directory.Delete(_dir, true);

    sealed class Collect(int size) : ITensorSink
    {
        public readonly byte[] Data = new byte[size];
        public readonly List<(long, int)> Chunks = new();
        public Span<byte> Begin(long offset, int length) => Data.AsSpan((int)offset, length);
        public void End(long offset, int length) => Chunks.Add((offset, length));
    }

    string Write(out byte[] a, out byte[] b)
    {
        var rng = new Random(5);
        a = new byte[4 * 1001];
        b = new byte[2 * 777];
        rng.NextBytes(a);
        rng.NextBytes(b);
        string path = Path.Combine(_dir, "m.safetensors");
        SafeTensorsWriter.WriteFile(path, new[] { (new TensorSpec("a", DType.F32, new long[] { 1001 }), a), (new TensorSpec("b", DType.BF16, new long[] { 777 }), b) });
        return path;
    }

    [Test]
    public void ReadAtReturnsTheSameBytesAsTheMap()
    {
        using var f = SafeTensorsFile.Open(Write(out var a, out var b));
        var dest = new byte[300];
        f.ReadAt(f.Get("b"), 1000, dest);
        Assert.That(dest, Is.EqualTo(b.AsSpan(1000, 300).ToArray()));
        Assert.That(dest, Is.EqualTo(f.GetBytes("b").Slice(1000, 300).ToArray()));
        Assert.Throws<ArgumentOutOfRangeException>(() => f.ReadAt(f.Get("b"), b.Length - 10, new byte[11]));
    }

    [Test]
    public void CheckpointSourceCopiesInElementAlignedChunks()
    {
        Write(out var a, out _);
        using var src = CheckpointSource.Open(_dir);
        var sink = new Collect(a.Length);
        src.Read("a", 1002, sink); // not a multiple of 4: chunks round down to whole F32 elements
        Assert.That(sink.Data, Is.EqualTo(a));
        Assert.That(sink.Chunks.Select(c => c.Item2 % 4), Is.All.EqualTo(0));
        Assert.That(sink.Chunks.Select(c => c.Item1), Is.EqualTo(Enumerable.Range(0, sink.Chunks.Count).Select(i => (long)i * 1000)));
        Assert.That(src.Tensors.Select(t => $"{t.Name} {t.DType}"), Is.EqualTo(new[] { "a F32", "b BF16" }));
    }
}
