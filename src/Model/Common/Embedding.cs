using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Mtp.Model;

// Field names in these modules ARE the parameter names (TorchSharp registers fields by name), so they
// follow the checkpoint's snake_case and are exempt from C# naming conventions.
#pragma warning disable IDE1006

/// <summary>Token embedding with parameter <c>weight</c> [V, H].</summary>
public sealed class Embedding : nn.Module<Tensor, Tensor>
{
    readonly Parameter weight;

    /// <summary>Creates a zero-initialised embedding.</summary>
    public Embedding(long vocab, long hidden, ScalarType dtype, Device device) : base("Embedding")
    {
        weight = P.Make(new[] { vocab, hidden }, dtype, device);
        RegisterComponents();
    }

    /// <inheritdoc />
    public override Tensor forward(Tensor ids) => weight.index_select(0, ids.flatten()).unflatten(0, ids.shape);
}
