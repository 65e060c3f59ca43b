using System.Runtime.InteropServices;
using System.Text.Json.Nodes;
using Mtp.SafeTensors;
using TorchSharp;
using static TorchSharp.torch;

namespace Mtp.Model.Tests;

/// <summary>The zero-copy fill: chunk offsets land where they belong, in the direct and the converting (staging) path.</summary>
public class TensorFillTests
{
    /// <summary>A source of one tensor that hands out its bytes in chunks of <c>chunk</c> bytes (smaller than asked).</summary>
    sealed class ChunkedSource(TensorSpec spec, byte[] data, int chunk) : ITensorSource
    {
        public int Chunks;
        public string Directory => "(memory)";
        public JsonObject? Config => null;
        public IReadOnlyList<TensorSpec> Tensors => new[] { spec };
        public bool Contains(string name) => name == spec.Name;
        public void Read(string name, int maxChunkBytes, ITensorSink sink)
        {
            int step = Math.Min(chunk, maxChunkBytes);
            for (int off = 0; off < data.Length; off += step)
            {
                int n = Math.Min(step, data.Length - off);
                data.AsSpan(off, n).CopyTo(sink.Begin(off, n));
                sink.End(off, n);
                Chunks++;
            }
        }
        public void Dispose() { }
    }

    static float[] Values(int n) => Enumerable.Range(0, n).Select(i => (float)Math.Sin(i * 0.37) * (i % 7 + 1)).ToArray();

    [TestCase(ScalarType.Float32, 1000)]
    [TestCase(ScalarType.BFloat16, 1000)]
    [TestCase(ScalarType.Float32, (8 << 20) + 12)] // more than one staging chunk
    public void F32SourceFillsAnyDtypeChunkByChunk(ScalarType target, int chunkBytes)
    {
        int n = target == ScalarType.Float32 && chunkBytes > 4096 ? 5_000_003 : 40_001;
        var v = Values(n);
        var bytes = MemoryMarshal.AsBytes(v.AsSpan()).ToArray();
        var spec = new TensorSpec("w", DType.F32, new long[] { n });
        using var src = new ChunkedSource(spec, bytes, chunkBytes);
        using var t = zeros(new long[] { n }, dtype: target);
        TensorFill.Into(src, spec, t);
        Assert.That(src.Chunks, Is.GreaterThan(1), "the tensor came in several chunks");
        using var expected = tensor(v).to(target);
        Assert.That(t.eq(expected).all().item<bool>(), Is.True);
        Assert.That(TensorFill.IsDirect(t, DType.F32), Is.EqualTo(target == ScalarType.Float32));
    }

    [Test]
    public void Bf16SourceIntoF32GoesThroughStagingExactly()
    {
        int n = 10_000_001; // 20 MB of BF16: more than the 16 MB staging chunk
        var v = Values(n);
        var bf = new ushort[n];
        for (int i = 0; i < n; i++) bf[i] = Mtp.Quant.BFloat16.FromFloat(v[i]);
        var spec = new TensorSpec("w", DType.BF16, new long[] { n });
        using var src = new ChunkedSource(spec, MemoryMarshal.AsBytes(bf.AsSpan()).ToArray(), int.MaxValue);
        using var t = zeros(new long[] { n }, dtype: ScalarType.Float32);
        TensorFill.Into(src, spec, t);
        Assert.That(src.Chunks, Is.EqualTo(2), "16 MB staging chunks");
        var got = t.data<float>().ToArray();
        for (int i = 0; i < n; i += 9973) Assert.That(got[i], Is.EqualTo(Mtp.Quant.BFloat16.ToFloat(bf[i])), $"element {i}");
        Assert.That(got[n - 1], Is.EqualTo(Mtp.Quant.BFloat16.ToFloat(bf[n - 1])));
    }

    [Test]
    public void AChunkOutsideTheTensorIsRefused()
    {
        var spec = new TensorSpec("w", DType.F32, new long[] { 10 });
        using var src = new ChunkedSource(spec, new byte[44], 8); // one element too many
        using var t = zeros(new long[] { 10 }, dtype: ScalarType.Float32);
        Assert.Throws<InvalidDataException>(() => TensorFill.Into(src, spec, t));
    }
}
