using System.Text;
using Mtp.Tests.Shared;

namespace Mtp.SafeTensors.Tests;

public class WriterRoundTripTests
{
    string _dir = "";

    [SetUp] public void SetUp() => _dir = RepoPaths.NewTempDir("st-write");
    [TearDown] public void TearDown() => Directory.Delete(_dir, true);

    internal static byte[] Pattern(long n, int seed)
    {
        var b = new byte[n];
        new Random(seed).NextBytes(b);
        return b;
    }

    [Test]
    public void EveryDTypeRoundTrips()
    {
        var tensors = new List<(TensorSpec, byte[])>();
        int i = 0;
        foreach (DType dt in Enum.GetValues<DType>())
        {
            long[] shape = dt.Bits() == 6 ? new long[] { 2, 4 } : new long[] { 3, 2 };
            var spec = new TensorSpec("t." + dt.Name(), dt, shape);
            tensors.Add((spec, Pattern(spec.ByteLength, i++)));
        }
        string p = Path.Combine(_dir, "all.safetensors");
        SafeTensorsWriter.WriteFile(p, tensors, new Dictionary<string, string> { ["format"] = "pt" });

        using var f = SafeTensorsFile.Open(p);
        Assert.That(f.Metadata["format"], Is.EqualTo("pt"));
        Assert.That(f.Header.DataStart % 8, Is.EqualTo(0), "data starts 8-byte aligned");
        foreach (var (spec, data) in tensors)
        {
            TensorInfo t = f.Get(spec.Name);
            Assert.That(t.DType, Is.EqualTo(spec.DType));
            Assert.That(t.Shape, Is.EqualTo(spec.Shape));
            Assert.That(f.GetBytes(t).ToArray(), Is.EqualTo(data), spec.Name);
        }
        Assert.That(f.Get("t.F4").ByteLength, Is.EqualTo(3), "F4 shape counts nibbles");
    }

    [Test]
    public void HeaderIsPaddedWithSpacesAndIsPlainJson()
    {
        string p = Path.Combine(_dir, "pad.safetensors");
        SafeTensorsWriter.WriteFile(p, new[] { (new TensorSpec("abc", DType.U8, new long[] { 1 }), new byte[] { 9 }) });
        byte[] raw = File.ReadAllBytes(p);
        ulong n = BitConverter.ToUInt64(raw, 0);
        Assert.That((8 + (long)n) % 8, Is.EqualTo(0));
        string header = Encoding.UTF8.GetString(raw, 8, (int)n);
        Assert.That(header.TrimEnd(' '), Is.EqualTo("{\"abc\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}"));
        Assert.That(raw[^1], Is.EqualTo(9));
    }

    [Test]
    public void ChunkedAppendsMatchWholeWrites()
    {
        var specs = new[] { new TensorSpec("a", DType.F32, new long[] { 5 }), new TensorSpec("b", DType.BF16, new long[] { 7 }) };
        byte[] all = Pattern(20 + 14, 3);
        string p = Path.Combine(_dir, "chunks.safetensors");
        using (var w = SafeTensorsWriter.Create(p, specs))
        {
            for (int i = 0; i < all.Length; i += 5) w.Append(all.AsSpan(i, Math.Min(5, all.Length - i)));
            w.Complete();
        }
        using var f = SafeTensorsFile.Open(p);
        Assert.That(f.GetBytes("a").ToArray(), Is.EqualTo(all[..20]));
        Assert.That(f.GetBytes("b").ToArray(), Is.EqualTo(all[20..]));
    }

    [Test]
    public void AnIncompleteWriteLeavesNothingBehind()
    {
        string p = Path.Combine(_dir, "half.safetensors");
        using (var w = SafeTensorsWriter.Create(p, new[] { new TensorSpec("a", DType.F32, new long[] { 4 }) }))
        {
            w.Append(new byte[8]);
            Assert.Throws<InvalidOperationException>(() => w.Complete());
        }
        Assert.That(Directory.GetFiles(_dir), Is.Empty, "neither the file nor its temporary remains");
    }

    [Test]
    public void OutOfOrderOrWrongSizedWritesAreRefused()
    {
        string p = Path.Combine(_dir, "order.safetensors");
        using var w = SafeTensorsWriter.Create(p, new[] { new TensorSpec("a", DType.U8, new long[] { 2 }), new TensorSpec("b", DType.U8, new long[] { 2 }) });
        Assert.Throws<InvalidOperationException>(() => w.Write("b", new byte[2]));
        Assert.Throws<ArgumentException>(() => w.Write("a", new byte[3]));
    }

    [Test]
    public void ShardedCheckpointWithIndexAndCrossShardLookup()
    {
        var specs = Enumerable.Range(0, 10).Select(i => new TensorSpec($"layer.{i}.w", DType.F32, new long[] { 10 + i })).ToList();
        var data = specs.ToDictionary(s => s.Name, s => Pattern(s.ByteLength, s.Name.Length * 31 + (int)s.Shape[0]));
        var shards = ShardPlanner.Plan(specs, maxShardBytes: 150);
        Assert.That(shards.Count, Is.GreaterThan(2));
        Assert.That(shards.All(s => s.Bytes <= 150));
        Assert.That(shards[0].FileName, Is.EqualTo($"model-00001-of-{shards.Count:D5}.safetensors"));
        foreach (var s in shards)
            SafeTensorsWriter.WriteFile(Path.Combine(_dir, s.FileName), s.Tensors.Select(t => (t, data[t.Name])));
        ShardPlanner.WriteIndex(_dir, shards);

        using var ck = Checkpoint.Open(_dir);
        Assert.That(ck.Files.Count, Is.EqualTo(shards.Count));
        Assert.That(ck.Index!.TotalSize, Is.EqualTo(specs.Sum(s => s.ByteLength)));
        Assert.That(ck.Tensors.Count, Is.EqualTo(10));
        foreach (var s in specs)
        {
            var loc = ck.Get(s.Name);
            Assert.That(loc.File.GetBytes(loc.Info).ToArray(), Is.EqualTo(data[s.Name]));
        }
        Assert.That(Path.GetFileName(ck.Get("layer.9.w").File.Path), Is.EqualTo(shards[^1].FileName));
        Assert.That(ck.Warnings, Is.Empty);
    }

    [Test]
    public void OneShardIsNamedModelSafetensors()
    {
        var shards = ShardPlanner.Plan(new[] { new TensorSpec("a", DType.U8, new long[] { 4 }) }, 1 << 20);
        Assert.That(shards.Single().FileName, Is.EqualTo("model.safetensors"));
    }
}
