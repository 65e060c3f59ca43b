using static TorchSharp.torch;

namespace Mtp.Model;

/// <summary>The attention core every family shares: masked softmax(q k^T * scale) v, scores in F32.</summary>
internal static class MaskedAttention
{
    /// <summary>
    /// q [B, nh, S, dk], k [B, nkv, S, dk], v [B, nkv, S, dv] with nkv dividing nh (grouped-query: each key/value head
    /// serves nh/nkv consecutive query heads); <paramref name="mask"/> [B, 1, S, S] true where attention is allowed.
    /// Returns [B, S, nh * dv] in <paramref name="dtype"/>.
    /// </summary>
    public static Tensor Forward(Tensor q, Tensor k, Tensor v, Tensor mask, double scale, ScalarType dtype)
    {
        long b = q.shape[0], nh = q.shape[1], s = q.shape[2], nkv = k.shape[1];
        if (nh != nkv)
        {
            k = k.repeat_interleave(nh / nkv, dim: 1);
            v = v.repeat_interleave(nh / nkv, dim: 1);
        }
        var scores = matmul(q, k.transpose(-2, -1)).to(ScalarType.Float32).Times(scale);
        scores = scores.FillWhere(mask.logical_not(), double.NegativeInfinity);
        var probs = scores.softmax(-1).to(dtype);
        return matmul(probs, v).transpose(1, 2).reshape(b, s, nh * v.shape[^1]);
    }
}
