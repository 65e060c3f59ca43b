using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Mtp.Model;

// Field names in these modules ARE the parameter names (TorchSharp registers fields by name).
#pragma warning disable IDE1006

/// <summary>
/// DeepSeek-V4 rotary embedding: adjacent pairs (complex view) on the LAST <c>qk_rope_head_dim</c> dims
/// of a head. Pure sliding-window layers use rope_theta without YaRN; layers with a compressor use
/// compress_rope_theta with YaRN frequency interpolation (no mscale on cos/sin).
/// </summary>
public static class V4Rope
{
    /// <summary>Inverse frequencies (length dim/2), YaRN-interpolated when <paramref name="yarn"/> has an original length.</summary>
    public static double[] InverseFrequencies(int dim, double theta, YarnScaling? yarn)
    {
        var inv = new double[dim / 2];
        for (int i = 0; i < dim / 2; i++) inv[i] = 1.0 / Math.Pow(theta, 2.0 * i / dim);
        if (yarn is not YarnScaling y || y.OriginalMaxPositionEmbeddings <= 0) return inv;
        double CorrectionDim(double rotations) => dim * Math.Log(y.OriginalMaxPositionEmbeddings / (rotations * 2 * Math.PI)) / (2 * Math.Log(theta));
        double low = Math.Max(Math.Floor(CorrectionDim(y.BetaFast)), 0);
        double high = Math.Min(Math.Ceiling(CorrectionDim(y.BetaSlow)), dim - 1);
        if (low == high) high += 0.001;
        for (int i = 0; i < dim / 2; i++)
        {
            double smooth = 1 - Math.Clamp((i - low) / (high - low), 0, 1);
            inv[i] = inv[i] / y.Factor * (1 - smooth) + inv[i] * smooth;
        }
        return inv;
    }

    /// <summary>cos, sin [..., dim/2] (F32) for integer positions of any shape.</summary>
    public static (Tensor Cos, Tensor Sin) CosSin(double[] inv, Tensor positions)
    {
        using var scope = NewDisposeScope();
        var angles = positions.to(ScalarType.Float64).unsqueeze(-1) * tensor(inv, dtype: ScalarType.Float64, device: positions.device);
        return (angles.cos().to(ScalarType.Float32).MoveToOuterDisposeScope(), angles.sin().to(ScalarType.Float32).MoveToOuterDisposeScope());
    }

    /// <summary>Rotates the last <paramref name="rd"/> dims of <paramref name="x"/> (cos/sin broadcast to [..., rd/2]); inverse rotates back.</summary>
    public static Tensor ApplyTail(Tensor x, Tensor cos, Tensor sin, int rd, bool inverse = false)
    {
        long d = x.shape[^1];
        var tail = Rope.Apply(x.narrow(-1, d - rd, rd), cos, inverse ? -sin : sin, interleave: true);
        return d == rd ? tail : cat(new[] { x.narrow(-1, 0, d - rd), tail }, -1);
    }
}
