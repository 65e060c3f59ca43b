using TorchSharp;
using static TorchSharp.torch;

namespace Mtp.Model;

/// <summary>
/// Rotary position embedding for the rope part of MLA heads, with optional YaRN.
/// Convention: DeepSeek-V3 rotates ADJACENT pairs (x[2i], x[2i+1]) by angle pos * inv_freq[i]
/// (DeepSeek's inference/model.py complex view; transformers' <c>rope_interleave=true</c>, which
/// de-interleaves into the half layout first: the same q·k products). <c>rope_interleave=false</c>
/// selects the half-rotation convention (x[i], x[i + d/2]).
/// </summary>
internal static class Rope
{
    /// <summary>Plain rope inverse frequencies theta^(-2i / dim), i &lt; dim/2, of every family.</summary>
    public static double[] InverseFrequencies(int dim, double theta)
    {
        var inv = new double[dim / 2];
        for (int i = 0; i < dim / 2; i++) inv[i] = 1.0 / Math.Pow(theta, 2.0 * i / dim);
        return inv;
    }

    /// <summary>DeepSeek-V3's inverse frequencies (length qk_rope_head_dim/2), YaRN-corrected when configured (<see cref="YarnScaling.Interpolate"/>).</summary>
    public static double[] InverseFrequencies(DeepSeekV3Config cfg)
    {
        var inv = InverseFrequencies(cfg.QkRopeHeadDim, cfg.RopeTheta);
        return cfg.Yarn is YarnScaling y ? y.Interpolate(inv, cfg.QkRopeHeadDim, cfg.RopeTheta) : inv;
    }

    /// <summary>YaRN's mscale: 0.1 * m * ln(scale) + 1 (1 when scale ≤ 1).</summary>
    public static double YarnMscale(double scale, double m) => scale <= 1 ? 1.0 : 0.1 * m * Math.Log(scale) + 1.0;

    /// <summary>
    /// Multiplier on cos/sin: mscale(factor, mscale) / mscale(factor, mscale_all_dim), with mscale_all_dim 0 when the
    /// config has none (so mscale(factor, 0) = 1 and the multiplier is 0.1 * mscale * ln(factor) + 1). This is DeepSeek's
    /// modeling_deepseek.py (<c>DeepseekV3YarnRotaryEmbedding</c>, mscale_all_dim defaulting to 0) and what vLLM and SGLang
    /// serve (<c>DeepseekScalingRotaryEmbedding</c>, same ratio and defaults: mscale 1, mscale_all_dim 0). transformers
    /// differs when mscale or mscale_all_dim is missing or 0: its <c>_compute_yarn_parameters</c> then takes
    /// 0.1 * ln(factor) + 1 whatever mscale is. Released DeepSeek configs set mscale = mscale_all_dim (= 1), where every implementation gives 1
    /// (src/Model/README.md).
    /// </summary>
    public static double CosSinFactor(DeepSeekV3Config cfg) =>
        cfg.Yarn is YarnScaling y ? YarnMscale(y.Factor, y.Mscale) / YarnMscale(y.Factor, y.MscaleAllDim) : 1.0;

    /// <summary>
    /// Softmax scale: 1/sqrt(qk_head_dim), times mscale(factor, mscale_all_dim)^2 under YaRN when mscale_all_dim is set
    /// and non-zero (DeepSeek's modeling_deepseek.py, vLLM's and transformers' DeepSeek-V3 attention; DeepSeek's
    /// inference/model.py squares 0.1 * mscale * ln(factor) + 1 with its own <c>mscale</c> argument, default 1, the
    /// released HF configs' mscale_all_dim; it puts no multiplier on cos/sin, the ratio above being 1 for those configs).
    /// </summary>
    public static double SoftmaxScale(DeepSeekV3Config cfg)
    {
        double s = 1.0 / Math.Sqrt(cfg.QkHeadDim);
        if (cfg.Yarn is YarnScaling y && y.MscaleAllDim != 0)
        {
            double m = YarnMscale(y.Factor, y.MscaleAllDim);
            s *= m * m;
        }
        return s;
    }

    /// <summary>cos and sin [B, 1, S, dim/2] (F32) for integer positions [B, S].</summary>
    public static (Tensor Cos, Tensor Sin) CosSin(DeepSeekV3Config cfg, Tensor positions)
    {
        using var scope = NewDisposeScope();
        var inv = tensor(InverseFrequencies(cfg), dtype: ScalarType.Float64, device: positions.device);
        var angles = positions.to(ScalarType.Float64).unsqueeze(-1) * inv; // [B,S,d/2], in f64 for large positions
        double f = CosSinFactor(cfg);
        var cos = angles.cos().Times(f).to(ScalarType.Float32).unsqueeze(1);
        var sin = angles.sin().Times(f).to(ScalarType.Float32).unsqueeze(1);
        return (cos.MoveToOuterDisposeScope(), sin.MoveToOuterDisposeScope());
    }

    /// <summary>Rotates the last dimension of <paramref name="x"/> [B, h, S, d] by cos/sin [B, 1, S, d/2].</summary>
    public static Tensor Apply(Tensor x, Tensor cos, Tensor sin, bool interleave)
    {
        var dt = x.dtype;
        var xf = x.to(ScalarType.Float32);
        long d = x.shape[^1];
        Tensor x0, x1;
        if (interleave)
        {
            var pairs = xf.view(x.shape[..^1].Concat(new[] { d / 2, 2L }).ToArray());
            x0 = pairs.select(-1, 0);
            x1 = pairs.select(-1, 1);
            var r = stack(new[] { x0 * cos - x1 * sin, (x0 * sin).Plus(x1 * cos) }, -1).flatten(-2);
            return r.to(dt);
        }
        x0 = xf.narrow(-1, 0, d / 2);
        x1 = xf.narrow(-1, d / 2, d / 2);
        return cat(new[] { x0 * cos - x1 * sin, (x0 * sin).Plus(x1 * cos) }, -1).to(dt);
    }

    /// <summary>
    /// x [B, h, S, d]: RoPE on the first 2*cos.shape[-1] dims, the rest passes through (partial RoPE of Qwen and GLM,
    /// and of DeepSeek-V3.2's indexer). Rotate-half unless <paramref name="interleave"/> (adjacent pairs).
    /// </summary>
    public static Tensor ApplyPartial(Tensor x, Tensor cos, Tensor sin, bool interleave = false)
    {
        long rd = cos.shape[^1] * 2, d = x.shape[^1];
        var rot = Apply(x.narrow(-1, 0, rd), cos, sin, interleave);
        return rd == d ? rot : cat(new[] { rot, x.narrow(-1, rd, d - rd) }, -1);
    }
}
