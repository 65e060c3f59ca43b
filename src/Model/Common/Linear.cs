using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Mtp.Model;

// Field names in these modules ARE the parameter names (TorchSharp registers fields by name), so they
// follow the checkpoint's snake_case and are exempt from C# naming conventions.
#pragma warning disable IDE1006

/// <summary>Linear layer: <c>weight</c> [out, in], and <c>bias</c> [out] only when asked for (most projections have none).</summary>
internal sealed class Linear : nn.Module<Tensor, Tensor>
{
    readonly Parameter weight;
    readonly Parameter? bias;

    /// <summary>Creates a zero-initialised layer (weights come from a checkpoint); <paramref name="withBias"/> adds <c>bias</c>.</summary>
    public Linear(long inFeatures, long outFeatures, ScalarType dtype, Device device, bool withBias = false) : base("Linear")
    {
        weight = P.Make(new[] { outFeatures, inFeatures }, dtype, device);
        if (withBias) bias = P.Make(new[] { outFeatures }, dtype, device);
        RegisterComponents();
    }

    /// <summary>The weight [out, in].</summary>
    public Parameter Weight => weight;

    /// <inheritdoc />
    public override Tensor forward(Tensor x) => bias is null ? nn.functional.linear(x, weight) : nn.functional.linear(x, weight, bias);
}
