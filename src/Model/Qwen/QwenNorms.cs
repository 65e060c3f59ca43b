using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Mtp.Model.Qwen;

// Field names in these modules ARE the parameter names (TorchSharp registers fields by name), so they
// follow the checkpoint's snake_case.
#pragma warning disable IDE1006

/// <summary>Zero-centred RMSNorm (Qwen3-Next / Qwen3.5): x * rsqrt(mean(x^2) + eps) * (1 + w), in F32.</summary>
public sealed class ZeroCenteredRmsNorm : nn.Module<Tensor, Tensor>
{
    readonly Parameter weight;
    readonly double _eps;

    /// <summary>Creates a norm with w = 0 (identity scale).</summary>
    public ZeroCenteredRmsNorm(long dim, double eps, ScalarType dtype, Device device) : base("ZeroCenteredRmsNorm")
    {
        weight = new Parameter(zeros(dim, dtype: dtype, device: device), requires_grad: true);
        _eps = eps;
        RegisterComponents();
    }

    /// <summary>The weight w.</summary>
    public Parameter Weight => weight;

    /// <inheritdoc />
    public override Tensor forward(Tensor x)
    {
        var xf = x.to(ScalarType.Float32);
        var normed = xf * xf.Squared().mean(new long[] { -1 }, keepdim: true).Plus(_eps).rsqrt();
        return (normed * weight.to(ScalarType.Float32).Plus(1.0)).to(x.dtype);
    }
}

/// <summary>Gated RMSNorm of the linear attention: (w * rmsnorm(x)) * silu(z), plain (not zero-centred) weight.</summary>
public sealed class GatedRmsNorm : nn.Module<Tensor, Tensor, Tensor>
{
    readonly Parameter weight;
    readonly double _eps;

    /// <summary>Creates a norm with unit weight.</summary>
    public GatedRmsNorm(long dim, double eps, ScalarType dtype, Device device) : base("GatedRmsNorm")
    {
        weight = new Parameter(ones(dim, dtype: dtype, device: device), requires_grad: true);
        _eps = eps;
        RegisterComponents();
    }

    /// <inheritdoc />
    public override Tensor forward(Tensor x, Tensor z)
    {
        var xf = x.to(ScalarType.Float32);
        var normed = (xf * xf.Squared().mean(new long[] { -1 }, keepdim: true).Plus(_eps).rsqrt()).to(x.dtype);
        var y = weight * normed;
        return (y.to(ScalarType.Float32) * nn.functional.silu(z.to(ScalarType.Float32))).to(x.dtype);
    }
}
