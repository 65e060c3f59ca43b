using System.Text.Json.Nodes;
using static TorchSharp.torch;

namespace Mtp.Model;

/// <summary>
/// Learnable synthetic stream: documents of random length (8..seqLen tokens) packed into rows; inside a
/// document x[t+1] = (5 x[t] + 3) mod V with probability 0.9, else a random token. Both the next token
/// and the tokens further ahead (MTP targets) are predictable, so main and MTP losses fall.
/// </summary>
public sealed class SyntheticTokenSource : TokenSource
{
    readonly int _vocab;
    readonly ResumableRng _rng;

    /// <summary>Creates the stream for a vocabulary and seed.</summary>
    public SyntheticTokenSource(int vocab, ulong seed)
    {
        _vocab = vocab;
        _rng = new ResumableRng(seed);
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
