using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Mtp.Model;

// Field names in these modules ARE the parameter names (TorchSharp registers fields by name), so they
// follow the checkpoint's snake_case and are exempt from C# naming conventions.
#pragma warning disable IDE1006

/// <summary>LayerNorm with <c>weight</c> and <c>bias</c>, kept and computed in F32 (the checkpoints that have one store it in F32).</summary>
internal sealed class LayerNorm : nn.Module<Tensor, Tensor>
{
    readonly Parameter weight;
    readonly Parameter bias;
    readonly double _eps;

    /// <summary>Creates a norm with unit weight and zero bias.</summary>
    public LayerNorm(long dim, double eps, Device device) : base("LayerNorm")
    {
        weight = P.Make(new[] { dim }, ScalarType.Float32, device, ones: true);
        bias = P.Make(new[] { dim }, ScalarType.Float32, device);
        _eps = eps;
        RegisterComponents();
    }

    /// <inheritdoc />
    public override Tensor forward(Tensor x) =>
        nn.functional.layer_norm(x.to(ScalarType.Float32), new[] { x.shape[^1] }, weight, bias, _eps).to(x.dtype);
}
