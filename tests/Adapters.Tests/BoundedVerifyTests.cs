using System.Text.Json.Nodes;
using Mtp.Adapters.Synthetic;
using Mtp.Quant;
using Mtp.SafeTensors;
using Mtp.Tests.Shared;

namespace Mtp.Adapters.Tests;

/// <summary>
/// verify on sparse replicas of a released checkpoint (DeepSeek-V3's widths, cut to two layers): chunked positioned reads
/// with drop-behind leave nothing in the page cache, holes are not read, and a difference in a tensor of any size gets
/// its first element and max abs difference.
/// </summary>
public class BoundedVerifyTests
{
    static string Replica(string dir, Action<JsonObject> cut, ulong seed = 0)
    {
        var cfg = (JsonObject)JsonNode.Parse(File.ReadAllText(Path.Combine(RepoPaths.Fixtures, "real-configs", "deepseek-v3.json")))!;
        cfg["num_hidden_layers"] = 2; cfg["first_k_dense_replace"] = 1; cfg["n_routed_experts"] = 4;
        cut(cfg);
        byte[] json = System.Text.Encoding.UTF8.GetBytes(cfg.ToJsonString());
        SynthPlan plan = SynthLike.FromConfig(cfg, "config.json").Build();
        var shards = ReplicaWriter.Layout(plan, null, null, 2_000_000_000, out var skipped);
        ReplicaWriter.WriteCheckpoint(plan, shards, json, dir, seed, ReplicaData.Scales, skipped);
        return dir;
    }

    [Test]
    public void IdenticalReplicasAreComparedWithoutFillingThePageCache()
    {
        if (!PageResidency.Available) Assert.Ignore("page residency is measured with Linux's mincore");
        string work = RepoPaths.NewTempDir("bounded-verify");
        string a = Replica(Path.Combine(work, "a"), c => c["vocab_size"] = 1024), b = Replica(Path.Combine(work, "b"), c => c["vocab_size"] = 1024);
        long logical = Directory.GetFiles(a, "*.safetensors").Sum(f => new FileInfo(f).Length);
        PageResidency.Evict(a);
        PageResidency.Evict(b);
        VerifyReport r = Verifier.Compare(a, b);
        long resident = PageResidency.ResidentInDir(a) + PageResidency.ResidentInDir(b);
        TestContext.Out.WriteLine($"logical {logical:N0} bytes per replica; resident after verify {resident:N0}");
        Assert.That(r.Identical, Is.True);
        Assert.That(resident, Is.LessThan(logical / 100), "verify leaves what it read in the page cache (or reads the holes)");
    }

    // A difference in the 1.85 GB BF16 embedding (past the old 1 GB limit of whole-tensor comparison) is located and measured.
    [Test]
    public void ADifferenceInAMultiGigabyteTensorIsMeasured()
    {
        string work = RepoPaths.NewTempDir("bounded-verify-diff");
        string a = Replica(Path.Combine(work, "a"), _ => { }), b = Replica(Path.Combine(work, "b"), _ => { });
        const string name = "model.embed_tokens.weight";
        long element;
        using (var ck = Checkpoint.Open(b))
        {
            TensorLocation t = ck.Get(name);
            Assert.That(t.Info.ByteLength, Is.GreaterThan(1L << 30));
            element = t.Info.ElementCount - 12345; // near the end: a whole-tensor check would have to read 1.85 GB to find it
            using var fs = new FileStream(t.File.Path, FileMode.Open, FileAccess.Write);
            fs.Position = t.File.AbsoluteOffset(t.Info) + element * 2;
            fs.Write(BitConverter.GetBytes((ushort)0x3FC0)); // BF16 1.5 over a hole (0.0)
        }
        VerifyReport r = Verifier.Compare(a, b, tolerance: 2.0);
        Assert.That(r.Differences.Select(d => d.Name), Is.EqualTo(new[] { name }));
        TensorDifference diff = r.Differences[0];
        Assert.That(diff.FirstIndex, Is.EqualTo(element));
        Assert.That(diff.MaxAbsDiff, Is.EqualTo((double)BFloat16.ToFloat(0x3FC0)));
        Assert.That(diff.WithinTolerance, Is.True);
    }

    // An FP8 weight whose code changes in one block: the max abs difference is that code's step times its block's scale.
    [Test]
    public void AQuantizedDifferenceIsDequantizedWithItsScale()
    {
        string work = RepoPaths.NewTempDir("bounded-verify-fp8");
        string a = Replica(Path.Combine(work, "a"), c => c["vocab_size"] = 1024), b = Replica(Path.Combine(work, "b"), c => c["vocab_size"] = 1024);
        const string name = "model.layers.1.mlp.experts.3.down_proj.weight";
        long row = 5000, col = 1500;
        float scale;
        using (var ck = Checkpoint.Open(b))
        {
            TensorLocation t = ck.Get(name), s = ck.Get(name + "_scale_inv");
            long cols = t.Info.Shape[1];
            scale = BitConverter.ToSingle(s.File.GetBytes(s.Info).Slice((int)((row / 128 * s.Info.Shape[1] + col / 128) * 4), 4));
            using var fs = new FileStream(t.File.Path, FileMode.Open, FileAccess.Write);
            fs.Position = t.File.AbsoluteOffset(t.Info) + row * cols + col;
            fs.WriteByte(0x38); // E4M3 1.0 over a hole (code 0 = 0.0)
        }
        VerifyReport r = Verifier.Compare(a, b);
        Assert.That(r.Differences.Select(d => d.Name), Is.EqualTo(new[] { name }));
        using var c2 = Checkpoint.Open(b);
        long colsN = c2.Get(name).Info.Shape[1];
        Assert.That(r.Differences[0].FirstIndex, Is.EqualTo(row * colsN + col));
        Assert.That(r.Differences[0].MaxAbsDiff, Is.EqualTo((double)(Fp8E4M3.ToFloat(0x38) * scale)).Within(1e-12));
    }
}
