using System.Text.Json.Nodes;

namespace Mtp.Model.Tests;

/// <summary>The synthetic stream (Adapters' SplitMix64 through ResumableRng) continues exactly from its saved state.</summary>
public class SyntheticTokenSourceTests
{
    [Test]
    public void ARestoredSourceDrawsWhatTheOriginalDrawsNext()
    {
        var source = new SyntheticTokenSource(256, 7);
        source.Next(2, 40).Dispose();
        JsonObject state = source.SaveState();
        Assert.That(state["rng"]!.GetValue<string>(), Is.Not.EqualTo("7"), "drawing moved the state");
        var restored = TokenSource.FromState(state);
        using var a = source.Next(3, 50);
        using var b = restored.Next(3, 50);
        Assert.That(a.InputIds.data<long>().ToArray(), Is.EqualTo(b.InputIds.data<long>().ToArray()));
        Assert.That(a.CuSeqlens, Is.EqualTo(b.CuSeqlens));
    }

    [Test]
    public void TheSameSeedGivesTheSameStreamAndAnotherSeedAnother()
    {
        using var a = new SyntheticTokenSource(256, 3).Next(1, 64);
        using var b = new SyntheticTokenSource(256, 3).Next(1, 64);
        using var c = new SyntheticTokenSource(256, 4).Next(1, 64);
        Assert.That(a.InputIds.data<long>().ToArray(), Is.EqualTo(b.InputIds.data<long>().ToArray()));
        Assert.That(a.InputIds.data<long>().ToArray(), Is.Not.EqualTo(c.InputIds.data<long>().ToArray()));
    }
}
