using System.Runtime.InteropServices;
using System.Text.Json.Nodes;
using static TorchSharp.torch;

namespace Mtp.Model;

/// <summary>SplitMix64: a tiny PRNG whose whole state is one ulong (exactly resumable).</summary>
public sealed class SplitMix64(ulong state)
{
    /// <summary>Current state.</summary>
    public ulong State { get; private set; } = state;

    /// <summary>Next 64 random bits.</summary>
    public ulong NextU64()
    {
        ulong z = State += 0x9E3779B97F4A7C15UL;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }

    /// <summary>Uniform integer in [0, n).</summary>
    public int Next(int n) => (int)(NextU64() % (ulong)n);

    /// <summary>Uniform double in [0, 1).</summary>
    public double NextDouble() => (NextU64() >> 11) * (1.0 / (1UL << 53));
}

/// <summary>
/// Learnable synthetic stream: documents of random length (8..seqLen tokens) packed into rows; inside a
/// document x[t+1] = (5 x[t] + 3) mod V with probability 0.9, else a random token. Both the next token
/// and the tokens further ahead (MTP targets) are predictable, so main and MTP losses fall.
/// </summary>
public sealed class SyntheticTokenSource : TokenSource
{
    readonly int _vocab;
    readonly SplitMix64 _rng;

    /// <summary>Creates the stream for a vocabulary and seed.</summary>
    public SyntheticTokenSource(int vocab, ulong seed)
    {
        _vocab = vocab;
        _rng = new SplitMix64(seed);
    }

    /// <inheritdoc />
    public override PackedBatch Next(int batch, int seqLen)
    {
        var rows = new List<List<long[]>>();
        for (int r = 0; r < batch; r++)
        {
            var row = new List<long[]>();
            int left = seqLen;
            while (left > 0)
            {
                int len = Math.Min(left, 8 + _rng.Next(Math.Max(1, seqLen - 7)));
                var doc = new long[len];
                long x = _rng.Next(_vocab);
                for (int t = 0; t < len; t++)
                {
                    doc[t] = x;
                    x = _rng.NextDouble() < 0.9 ? (5 * x + 3) % _vocab : _rng.Next(_vocab);
                }
                row.Add(doc);
                left -= len;
            }
            rows.Add(row);
        }
        return Build(rows, seqLen);
    }

    /// <inheritdoc />
    public override JsonObject SaveState() => new() { ["kind"] = "synthetic", ["vocab"] = _vocab, ["rng"] = _rng.State.ToString() };

    /// <summary>Restores from <see cref="SaveState"/>.</summary>
    public static SyntheticTokenSource Restore(JsonObject s) =>
        new(s["vocab"]!.GetValue<int>(), ulong.Parse(s["rng"]!.GetValue<string>()));
}
