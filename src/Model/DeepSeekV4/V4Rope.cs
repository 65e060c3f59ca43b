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
        var inv = Rope.InverseFrequencies(dim, theta);
        return yarn is YarnScaling y && y.OriginalMaxPositionEmbeddings > 0 ? y.Interpolate(inv, dim, theta) : inv;
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
