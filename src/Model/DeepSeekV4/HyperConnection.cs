using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Mtp.Model;

// Field names in these modules ARE the parameter names (TorchSharp registers fields by name).
#pragma warning disable IDE1006

/// <summary>
/// Hyper-connection math (DeepSeek-V4 mHC): the residual is <c>hc_mult</c> streams [B, S, hc, H].
/// </summary>
internal static class HyperConnection
{
    /// <summary>mixes = (flatten(x) · fnᵀ) · rsqrt(mean(flatten(x)²) + normEps), in F32: [B, S, rows of fn].</summary>
    public static Tensor Mixes(Tensor x, Tensor fn, double normEps)
    {
        var xf = x.flatten(2).to(ScalarType.Float32);
        var rs = xf.Squared().mean(new long[] { -1 }, keepdim: true).Plus(normEps).rsqrt();
        return nn.functional.linear(xf, fn.to(ScalarType.Float32)) * rs;
    }

    /// <summary>
    /// pre = sigmoid(m[:hc]·s0 + b) + eps; post = 2·sigmoid(m[hc:2hc]·s1 + b); comb = Sinkhorn(softmax(m[2hc:]·s2 + b) + eps):
    /// a column normalisation, then iters-1 rounds of row then column normalisation (each divides by sum + eps).
    /// </summary>
    public static (Tensor Pre, Tensor Post, Tensor Comb) Split(Tensor mixes, Tensor scale, Tensor bas, int hc, int iters, double eps)
    {
        var s = scale.to(ScalarType.Float32);
        var b = bas.to(ScalarType.Float32);
        var pre = (mixes.narrow(-1, 0, hc) * s[0]).Plus(b.narrow(0, 0, hc)).sigmoid().Plus(eps);
        var post = (mixes.narrow(-1, hc, hc) * s[1]).Plus(b.narrow(0, hc, hc)).sigmoid().Times(2.0);
        var shape = mixes.shape[..^1].Concat(new long[] { hc, hc }).ToArray();
        var comb = (mixes.narrow(-1, 2 * hc, hc * hc) * s[2]).Plus(b.narrow(0, 2 * hc, hc * hc)).view(shape);
        comb = comb.softmax(-1).Plus(eps);
        comb = comb / comb.sum(-2, keepdim: true).Plus(eps);
        for (int i = 0; i < iters - 1; i++)
        {
            comb = comb / comb.sum(-1, keepdim: true).Plus(eps);
            comb = comb / comb.sum(-2, keepdim: true).Plus(eps);
        }
        return (pre, post, comb);
    }

    /// <summary>y = Σ_p pre[p] · x[p]: [B, S, hc, H] → [B, S, H] in x's dtype.</summary>
    public static Tensor Collapse(Tensor x, Tensor pre) => (pre.unsqueeze(-1) * x.to(ScalarType.Float32)).sum(2).to(x.dtype);

    /// <summary>out[q] = post[q] · f + Σ_p comb[p, q] · residual[p]: [B, S, hc, H] in f's dtype.</summary>
    public static Tensor Expand(Tensor f, Tensor residual, Tensor post, Tensor comb)
    {
        var mixed = matmul(comb.transpose(-1, -2), residual.to(ScalarType.Float32));
        return (post.unsqueeze(-1) * f.to(ScalarType.Float32).unsqueeze(-2)).Plus(mixed).to(f.dtype);
    }
}

/// <summary>Final stream collapse <c>hc_head</c>: <c>hc_fn</c> [hc, hc*H], <c>hc_base</c> [hc], <c>hc_scale</c> [1] (all F32; transformers' names).</summary>
internal sealed class HcHead : nn.Module<Tensor, Tensor>
{
    readonly Parameter hc_fn;
    readonly Parameter hc_base;
    readonly Parameter hc_scale;
    readonly double _normEps, _hcEps;

    /// <summary>Creates the head.</summary>
    public HcHead(DeepSeekV4Config c, Device device) : base("HcHead")
    {
        hc_fn = P.Make(new long[] { c.HcMult, (long)c.HcMult * c.HiddenSize }, ScalarType.Float32, device);
        hc_base = P.Make(new long[] { c.HcMult }, ScalarType.Float32, device);
        hc_scale = P.Make(new long[] { 1 }, ScalarType.Float32, device);
        _normEps = c.RmsNormEps;
        _hcEps = c.HcEps;
        RegisterComponents();
    }

    /// <summary>[B, S, hc, H] → [B, S, H]: pre = sigmoid(mixes·scale + base) + eps, weighted sum of the streams.</summary>
    public override Tensor forward(Tensor x)
    {
        var pre = (HyperConnection.Mixes(x, hc_fn, _normEps) * hc_scale).Plus(hc_base).sigmoid().Plus(_hcEps);
        return HyperConnection.Collapse(x, pre);
    }
}
