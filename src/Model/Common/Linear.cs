using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Mtp.Model;

// Field names in these modules ARE the parameter names (TorchSharp registers fields by name), so they
// follow the checkpoint's snake_case and are exempt from C# naming conventions.
#pragma warning disable IDE1006

/// <summary>Bias-free linear layer whose single parameter is <c>weight</c> [out, in].</summary>
public sealed class Linear : nn.Module<Tensor, Tensor>
{
    readonly Parameter weight;

    /// <summary>Creates a zero-initialised layer (weights come from a checkpoint).</summary>
    public Linear(long inFeatures, long outFeatures, ScalarType dtype, Device device) : base("Linear")
    {
        weight = P.Make(new[] { outFeatures, inFeatures }, dtype, device);
        RegisterComponents();
    }

    /// <summary>The weight [out, in].</summary>
    public Parameter Weight => weight;

    /// <inheritdoc />
    public override Tensor forward(Tensor x) => nn.functional.linear(x, weight);
}
