using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Mtp.Model;

// Field names in these modules ARE the parameter names (TorchSharp registers fields by name), so they
// follow the checkpoint's snake_case and are exempt from C# naming conventions.
#pragma warning disable IDE1006

/// <summary>RMSNorm: weight * x / sqrt(mean(x^2) + eps), statistics in F32.</summary>
public sealed class RmsNorm : nn.Module<Tensor, Tensor>
{
    readonly Parameter weight;
    readonly double _eps;

    /// <summary>Creates a norm with unit weight.</summary>
    public RmsNorm(long dim, double eps, ScalarType dtype, Device device) : base("RmsNorm")
    {
        weight = P.Make(new[] { dim }, dtype, device, ones: true);
        _eps = eps;
        RegisterComponents();
    }

    /// <summary>The epsilon added to the mean square.</summary>
    public double Eps => _eps;

    /// <inheritdoc />
    public override Tensor forward(Tensor x)
    {
        var xf = x.to(ScalarType.Float32);
        var normed = xf * xf.Squared().mean(new long[] { -1 }, keepdim: true).Plus(_eps).rsqrt();
        return weight * normed.to(x.dtype);
    }
}
