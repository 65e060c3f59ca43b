using Mtp.Tests.Shared;
using static TorchSharp.torch;

namespace Mtp.Model.Tests;

/// <summary>A DeepSeek-V4 training checkpoint written with the earlier names loads into the model under the current ones.</summary>
[TestFixture]
public class DeepSeekV4FormerNamesTests
{
    [TestCase("deepseek-v4-flash", 50)]
    [TestCase("deepseek-v4-legacy-mtp", 20)] // one main layer and one depth
    public void OldNamedCheckpointLoadsTheSameParameters(string fixture, int minRenamed)
    {
        string nat = DeepSeekV4Util.Native(fixture);
        var (old, renamed) = FormerV4Names.Write(nat, "v4-former-" + fixture);
        Assert.That(renamed, Is.GreaterThanOrEqualTo(minRenamed));
        using var a = (DeepSeekV4Model)MtpModel.Load(nat, CPU, ScalarType.Float32);
        using var b = (DeepSeekV4Model)MtpModel.Load(old, CPU, ScalarType.Float32);
        var sa = a.StateDict();
        var sb = b.StateDict();
        Assert.That(sb.Keys, Is.EquivalentTo(sa.Keys));
        foreach (var (name, t) in sa)
            Assert.That(TestUtil.F(sb[name].to(ScalarType.Float32)), Is.EqualTo(TestUtil.F(t.to(ScalarType.Float32))), name);
    }
}
