using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Mtp.Model.Qwen;

// Field names in these modules ARE the parameter names (TorchSharp registers fields by name), so they
// follow the checkpoint's snake_case.
#pragma warning disable IDE1006

/// <summary>How the Gated DeltaNet recurrence is evaluated (same result up to rounding).</summary>
public enum DeltaRuleMode
{
    /// <summary>Token by token (the reference form).</summary>
    Recurrent,
    /// <summary>Chunked WY form: within-chunk triangular solve, one state update per chunk.</summary>
    Chunked,
}

/// <summary>
/// Packed sequences laid out one per row, so that the linear-attention convolution and recurrence start
/// from zero state at every sequence boundary. <c>Gather</c> [Count*MaxLen] picks flattened tokens (index
/// N = an appended zero row for the padding at each row's end); <c>Scatter</c> [N] maps every token back.
/// </summary>
public sealed record SegmentLayout(Tensor Gather, Tensor Scatter, long Count, long MaxLen)
{
    /// <summary>Builds the layout of cu_seqlens <paramref name="cu"/>.</summary>
    public static SegmentLayout Create(long[] cu, Device device)
    {
        long n = cu[^1], count = cu.Length - 1, maxLen = 0;
        for (int s = 0; s < count; s++) maxLen = Math.Max(maxLen, cu[s + 1] - cu[s]);
        var gather = new long[count * maxLen];
        var scatter = new long[n];
        for (int s = 0; s < count; s++)
            for (long j = 0; j < maxLen; j++)
            {
                long p = cu[s] + j;
                bool real = p < cu[s + 1];
                gather[s * maxLen + j] = real ? p : n;
                if (real) scatter[p] = s * maxLen + j;
            }
        return new SegmentLayout(tensor(gather, device: device), tensor(scatter, device: device), count, maxLen);
    }

    /// <summary>[B, S, C] → [Count, MaxLen, C] (zero padding at the end of each row).</summary>
    public Tensor ToSegments(Tensor x)
    {
        long c = x.shape[^1];
        var flat = x.reshape(-1, c);
        var padded = cat(new[] { flat, zeros(1, c, dtype: x.dtype, device: x.device) }, 0);
        return padded.index_select(0, Gather).view(Count, MaxLen, c);
    }

    /// <summary>[Count, MaxLen, C] → [B, S, C] given the original shape.</summary>
    public Tensor FromSegments(Tensor y, long[] shape) => y.reshape(-1, y.shape[^1]).index_select(0, Scatter).view(shape[0], shape[1], y.shape[^1]);
}

/// <summary>Per-forward inputs shared by all layers of a Qwen model.</summary>
/// <param name="Mask">[B, 1, S, S] bool: causal and same packed sequence (full attention).</param>
/// <param name="Cos">[B, 1, S, rotary/2] F32.</param>
/// <param name="Sin">[B, 1, S, rotary/2] F32.</param>
/// <param name="Segments">One row per packed sequence (linear attention).</param>
/// <param name="Mode">Delta-rule evaluation.</param>
/// <param name="ChunkSize">Chunk length of <see cref="DeltaRuleMode.Chunked"/>.</param>
public sealed record QwenContext(Tensor Mask, Tensor Cos, Tensor Sin, SegmentLayout Segments, DeltaRuleMode Mode, int ChunkSize);
