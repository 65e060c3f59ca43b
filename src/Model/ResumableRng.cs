using Mtp.Adapters.Synthetic;

namespace Mtp.Model;

/// <summary>
/// The synthetic data's random stream: Adapters' <see cref="SplitMix64"/> (the one PRNG of the project) plus the
/// state a training checkpoint records, so a resumed run continues exactly.
/// </summary>
internal sealed class ResumableRng(ulong state)
{
    SplitMix64 _rng = new(state);

    /// <summary>The state to continue from (<c>new ResumableRng(State)</c> draws what this one draws next).</summary>
    public ulong State => _rng.State;

    /// <summary>Next 64 random bits.</summary>
    public ulong NextU64() => _rng.Next();

    /// <summary>Uniform integer in [0, n).</summary>
    public int Next(int n) => (int)(NextU64() % (ulong)n);

    /// <summary>Uniform double in [0, 1).</summary>
    public double NextDouble() => (NextU64() >> 11) * (1.0 / (1UL << 53));
}
