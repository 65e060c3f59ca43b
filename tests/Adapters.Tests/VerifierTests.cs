using Mtp.SafeTensors;
using Mtp.Tests.Shared;

namespace Mtp.Adapters.Tests;

[TestFixture]
public class VerifierTests
{
    [Test]
    public void IdenticalCheckpointsPass()
    {
        string fx = Fx.Dir("deepseek-v3");
        var r = Verifier.Compare(fx, Fx.Rewrite(fx, "same"));
        Assert.That(r.Identical && r.Passed, Is.True);
        Assert.That(r.Compared, Is.EqualTo(167));
    }

    [Test]
    public void ReportsFirstDifferenceAndMaxAbsAfterDequantization()
    {
        string fx = Fx.Dir("deepseek-v3");
        const string w = "model.layers.0.self_attn.o_proj.weight";
        byte[] codes;
        using (var c = Checkpoint.Open(fx)) codes = c.Get(w).File.GetBytes(c.Get(w).Info).ToArray();
        codes[5] ^= 0x01;
        string other = Fx.Rewrite(fx, "diff", n => n == w || n == "lm_head.weight", (new TensorSpec(w, DType.F8_E4M3, new long[] { 32, 32 }), codes));
        var r = Verifier.Compare(fx, other);
        Assert.That(r.Identical, Is.False);
        Assert.That(r.OnlyInA, Is.EqualTo(new[] { "lm_head.weight" }));
        var d = r.Differences.Single();
        Assert.That(d.Name, Is.EqualTo(w));
        Assert.That(d.FirstIndex, Is.EqualTo(5));
        Assert.That(d.MaxAbsDiff, Is.GreaterThan(0));
        var json = r.ToJson().ToJsonString();
        Assert.That(json, Does.Contain("first_index"));
    }

    [Test]
    public void ToleranceAcceptsSmallDifferences()
    {
        string fx = Fx.Dir("deepseek-v3");
        const string n = "model.norm.weight";
        byte[] b;
        using (var c = Checkpoint.Open(fx)) b = c.Get(n).File.GetBytes(c.Get(n).Info).ToArray();
        b[0] ^= 0x01; // lowest mantissa bit of a BF16
        string other = Fx.Rewrite(fx, "tol", x => x == n, (new TensorSpec(n, DType.BF16, new long[] { 32 }), b));
        Assert.That(Verifier.Compare(fx, other).Passed, Is.False);
        Assert.That(Verifier.Compare(fx, other, tolerance: 0.1).Passed, Is.True);
        Assert.That(Verifier.Compare(fx, other, tolerance: 0.1).Identical, Is.False);
    }
}
