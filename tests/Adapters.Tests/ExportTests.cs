using Mtp.SafeTensors;
using Mtp.Tests.Shared;

namespace Mtp.Adapters.Tests;

[TestFixture]
public class ExportTests
{
    [Test]
    public void ChangedWeightReusesTheScaleUnlessItOverflows()
    {
        string fx = Fx.Dir("deepseek-v3");
        string tmp = RepoPaths.NewTempDir("changed");
        string nat = Path.Combine(tmp, "n");
        Converter.ToNative(fx, nat, new ConvertOptions());
        const string o = "model.layers.0.self_attn.o_proj.weight", q = "model.layers.0.self_attn.q_a_proj.weight";
        byte[] ob, qb;
        using (var c = Checkpoint.Open(nat))
        {
            ob = c.Get(o).File.GetBytes(c.Get(o).Info).ToArray();
            qb = c.Get(q).File.GetBytes(c.Get(q).Info).ToArray();
        }
        BitConverter.GetBytes(Mtp.Quant.BFloat16.FromFloat(1e4f)).CopyTo(ob, 0);   // overflows its block's scale
        BitConverter.GetBytes(Mtp.Quant.BFloat16.FromFloat(0f)).CopyTo(qb, 2);     // fits the reused scale
        string changed = Fx.Rewrite(nat, "changed-n", n => n == o || n == q);
        using (var c = Checkpoint.Open(nat))
        {
            var all = c.Tensors.Select(t => (new TensorSpec(t.Name, t.Info.DType, t.Info.Shape),
                t.Name == o ? ob : t.Name == q ? qb : t.File.GetBytes(t.Info).ToArray())).ToList();
            SafeTensorsWriter.WriteFile(Path.Combine(changed, "model.safetensors"), all);
        }
        string back = Path.Combine(tmp, "h");
        var r = Converter.ToHf(changed, back, new ConvertOptions { Reference = fx });
        Assert.That(r.Requantized.Select(x => x.Name), Is.EqualTo(new[] { o }));
        var v = Verifier.Compare(fx, back);
        Assert.That(v.Differences.Select(d => d.Name), Is.EquivalentTo(new[] { o, o + "_scale_inv", q }));
        Directory.Delete(tmp, true);
    }

    [Test]
    public void DtypeBf16WritesAnUnquantizedHfCheckpoint()
    {
        string fx = Fx.Dir("deepseek-v4-flash");
        string tmp = RepoPaths.NewTempDir("unq");
        Converter.ToNative(fx, Path.Combine(tmp, "n"), new ConvertOptions());
        Converter.ToHf(Path.Combine(tmp, "n"), Path.Combine(tmp, "h"), new ConvertOptions { DType = DType.BF16 });
        using var c = Checkpoint.Open(Path.Combine(tmp, "h"));
        Assert.That(c.Tensors.Any(t => t.Info.DType is DType.F8_E4M3 or DType.I8 or DType.F8_E8M0), Is.False);
        Assert.That(c.Get("layers.1.ffn.experts.2.w1.weight").Info.Shape, Is.EqualTo(new long[] { 32, 32 }));
        Assert.That(c.Get("mtp.0.e_proj.weight").Info.DType, Is.EqualTo(DType.BF16));
        Assert.That(c.Get("layers.0.ffn.gate.tid2eid").Info.DType, Is.EqualTo(DType.I32));
        Assert.That(Fx.Config(Path.Combine(tmp, "h"))["quantization_config"], Is.Null);
        Directory.Delete(tmp, true);
    }

    [Test]
    public void ShardsRespectTheMaximumSizeAndIndexIsWritten()
    {
        string fx = Fx.Dir("qwen3.5-moe");
        string tmp = RepoPaths.NewTempDir("shards");
        var r = Converter.ToNative(fx, Path.Combine(tmp, "n"), new ConvertOptions { MaxShardBytes = 40_000 });
        Assert.That(r.Shards.Count, Is.GreaterThan(3));
        var idx = ShardIndex.Read(Path.Combine(tmp, "n", ShardIndex.FileName));
        Assert.That(idx.TotalSize, Is.EqualTo(r.BytesWritten));
        using (var c = Checkpoint.Open(Path.Combine(tmp, "n")))
        {
            Assert.That(c.Contains("model.visual.patch_embed.proj.weight"), Is.True);
            Assert.That(c.Contains("mtp.layers.0.eh_proj.weight"), Is.True);
            Assert.That(c.Get("mtp.layers.0.mlp.experts.gate_up_proj").Info.Shape, Is.EqualTo(new long[] { 4, 32, 32 }));
        }
        Converter.ToHf(Path.Combine(tmp, "n"), Path.Combine(tmp, "h"), new ConvertOptions { Reference = fx });
        Assert.That(Verifier.Compare(fx, Path.Combine(tmp, "h")).Identical, Is.True);
        Directory.Delete(tmp, true);
    }
}
