using System.Text.Json.Nodes;
using Mtp.Quant;

namespace Mtp.Adapters;

/// <summary>
/// Rows per independently blocked chunk of one HF FP8 weight (its scale grid restarts at every chunk), as a family
/// declares it from its config; 0 when the weight is blocked uniformly.
/// </summary>
/// <param name="textConfig">The config object holding the text model's fields.</param>
/// <param name="hfWeight">The HF weight name (<c>...weight</c>).</param>
/// <param name="rows">The weight's rows.</param>
public delegate int RowChunkRule(JsonObject textConfig, string hfWeight, int rows);

/// <summary>
/// The FP8 block of one weight: the config's uniform block, or the family's row-chunked one (<see cref="QuantScheme.RowChunks"/>)
/// when the stored scale grid has that shape. Planning (both directions), inspect and verify all decide through here.
/// </summary>
internal static class TensorBlocks
{
    /// <summary>
    /// The family's row-chunked block for <paramref name="hfWeight"/> [<paramref name="rows"/>, <paramref name="cols"/>], or
    /// null when it declares none or the chunks give the uniform grid anyway.
    /// </summary>
    public static BlockSize? Chunked(QuantScheme? scheme, JsonObject? textConfig, string hfWeight, int rows, int cols, BlockSize uniform)
    {
        if (scheme?.RowChunks is not { } rule || textConfig is null || uniform.IsPerRow) return null;
        int chunk = rule(textConfig, hfWeight, rows);
        if (chunk <= 0 || rows % chunk != 0) return null;
        BlockSize b = uniform with { RowChunk = chunk };
        return b.GridFor(rows, cols) == uniform.GridFor(rows, cols) ? null : b;
    }

    /// <summary>The block whose grid is <paramref name="scaleShape"/>: the row-chunked one when it fits, else <paramref name="uniform"/>.</summary>
    public static BlockSize Of(QuantScheme? scheme, JsonObject? textConfig, string hfWeight, int rows, int cols, BlockSize uniform, long[]? scaleShape) =>
        Chunked(scheme, textConfig, hfWeight, rows, cols, uniform) is { } b && scaleShape is { Length: 2 } s && b.GridFor(rows, cols) == (s[0], s[1])
            ? b : uniform;

    /// <summary>What a scale grid was expected to be, for an error: <c>block 128x128 (expected [6, 32])</c>, plus the chunked reading when there is one.</summary>
    public static string Expected(QuantScheme? scheme, JsonObject? textConfig, string hfWeight, int rows, int cols, BlockSize uniform)
    {
        string one(BlockSize b) { var (r, c) = b.GridFor(rows, cols); return $"block {b} (expected [{r}, {c}])"; }
        return Chunked(scheme, textConfig, hfWeight, rows, cols, uniform) is { } b ? $"{one(uniform)} or {one(b)}" : one(uniform);
    }
}
