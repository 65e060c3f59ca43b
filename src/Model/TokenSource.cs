using System.Runtime.InteropServices;
using System.Text.Json.Nodes;
using static TorchSharp.torch;

namespace Mtp.Model;

/// <summary>A resumable source of packed training batches.</summary>
public abstract class TokenSource
{
    /// <summary>Next [batch, seqLen] packed batch (ids, next-token labels, cu_seqlens); advances the position.</summary>
    public abstract PackedBatch Next(int batch, int seqLen);

    /// <summary>Everything needed to continue exactly where this source is now.</summary>
    public abstract JsonObject SaveState();

    /// <summary>Recreates a source from <see cref="SaveState"/>.</summary>
    public static TokenSource FromState(JsonObject state) => state["kind"]?.GetValue<string>() switch
    {
        "synthetic" => SyntheticTokenSource.Restore(state),
        "file" => FileTokenSource.Restore(state),
        var k => throw new InvalidDataException($"unknown data source kind '{k}'"),
    };

    /// <summary>Builds a batch from rows of token segments (each segment one packed sequence).</summary>
    protected static PackedBatch Build(List<List<long[]>> rows, int seqLen)
    {
        var flat = new long[rows.Count * seqLen];
        var cu = new List<long> { 0 };
        long p = 0;
        foreach (var row in rows)
            foreach (var seg in row)
            {
                seg.CopyTo(flat, p);
                p += seg.Length;
                cu.Add(p);
            }
        var ids = tensor(flat).view(rows.Count, seqLen);
        var cuArr = cu.ToArray();
        return new PackedBatch(ids, Packing.NextTokenLabels(ids, cuArr), cuArr);
    }
}
