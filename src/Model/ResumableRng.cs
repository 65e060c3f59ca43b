using Mtp.Adapters.Synthetic;

namespace Mtp.Model;

/// <summary>
/// The synthetic data's random stream: Adapters' <see cref="SplitMix64"/> (the one PRNG of the project) plus the
/// state a training checkpoint records, so a resumed run continues exactly.
/// </summary>
internal sealed class ResumableRng(ulong state)
{
    // SplitMix64 is counter-based: after n draws from state s the state is s + n·γ (what SplitMix64.Skip adds). The
    // struct keeps its state private, so the position is counted here.
    const ulong Gamma = 0x9E3779B97F4A7C15UL;
    readonly ulong _start = state;
    SplitMix64 _rng = new(state);
    ulong _draws;

    /// <summary>The state to continue from (<c>new ResumableRng(State)</c> draws what this one draws next).</summary>
    public ulong State => unchecked(_start + Gamma * _draws);

    /// <summary>Next 64 random bits.</summary>
    public ulong NextU64()
    {
        _draws++;
        return _rng.Next();
    }

    /// <summary>Uniform integer in [0, n).</summary>
    public int Next(int n) => (int)(NextU64() % (ulong)n);

    /// <summary>Uniform double in [0, 1).</summary>
    public double NextDouble() => (NextU64() >> 11) * (1.0 / (1UL << 53));
}
