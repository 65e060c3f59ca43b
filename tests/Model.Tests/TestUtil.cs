using System.Text.Json.Nodes;
using Mtp.Adapters;
using Mtp.SafeTensors;
using Mtp.Tests.Shared;
using TorchSharp;
using static TorchSharp.torch;

namespace Mtp.Model.Tests;

static class TestUtil
{
    static readonly Dictionary<string, string> Cache = new();

    static readonly Dictionary<string, string> NativeCache = new();

    /// <summary>A cached training-layout conversion (BF16) of a repository fixture (do not modify it).</summary>
    public static string Native(string fixture)
    {
        lock (NativeCache)
        {
            if (NativeCache.TryGetValue(fixture, out var d)) return d;
            d = Path.Combine(RepoPaths.NewTempDir("fixture-native"), "out");
            Converter.ToNative(Path.Combine(RepoPaths.Fixtures, fixture), d, new ConvertOptions());
            NativeCache[fixture] = d;
            return d;
        }
    }

    /// <summary>A cached random tiny checkpoint (do not modify it).</summary>
    public static string Tiny(int depths = 1, long seed = 1, DType dtype = DType.F32)
    {
        string key = $"{depths}-{seed}-{dtype}";
        lock (Cache)
        {
            if (Cache.TryGetValue(key, out var d)) return d;
            d = RepoPaths.NewTempDir("tiny-" + key);
            RandomCheckpoint.Write(d, RandomCheckpoint.TinyConfig(depths), seed, dtype);
            Cache[key] = d;
            return d;
        }
    }

    /// <summary>Copies a checkpoint into a new dir as one file, letting <paramref name="edit"/> change the tensor list.</summary>
    public static string Rewrite(string src, Func<List<(TensorSpec Spec, byte[] Data)>, List<(TensorSpec Spec, byte[] Data)>> edit)
    {
        string dst = RepoPaths.NewTempDir("rewrite");
        using (var ck = Checkpoint.Open(src))
        {
            var list = ck.Tensors.Select(t => (new TensorSpec(t.Name, t.Info.DType, t.Info.Shape), t.File.GetBytes(t.Info).ToArray())).ToList();
            SafeTensorsWriter.WriteFile(Path.Combine(dst, "model.safetensors"), edit(list));
        }
        File.Copy(Path.Combine(src, "config.json"), Path.Combine(dst, "config.json"));
        return dst;
    }

    public static float[] F(Tensor t) => t.detach().to(ScalarType.Float32).cpu().contiguous().data<float>().ToArray();

    public static PackedBatch Batch(long[,] ids, long[] cu)
    {
        int b = ids.GetLength(0), s = ids.GetLength(1);
        var flat = new long[b * s];
        for (int i = 0; i < b; i++) for (int j = 0; j < s; j++) flat[i * s + j] = ids[i, j];
        var t = tensor(flat).view(b, s);
        return new PackedBatch(t, Packing.NextTokenLabels(t, cu), cu);
    }

    public static PackedBatch RandomBatch(int b, int s, long[] cu, int vocab, int seed)
    {
        var rng = new Random(seed);
        var ids = new long[b, s];
        for (int i = 0; i < b; i++) for (int j = 0; j < s; j++) ids[i, j] = rng.Next(vocab);
        return Batch(ids, cu);
    }
}
