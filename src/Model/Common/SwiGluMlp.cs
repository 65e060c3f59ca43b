using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Mtp.Model;

// Field names in these modules ARE the parameter names (TorchSharp registers fields by name), so they
// follow the checkpoint's snake_case and are exempt from C# naming conventions.
#pragma warning disable IDE1006

/// <summary>SwiGLU MLP with gate_proj / up_proj / down_proj (dense layers and shared experts).</summary>
public sealed class SwiGluMlp : nn.Module<Tensor, Tensor>
{
    readonly Linear gate_proj;
    readonly Linear up_proj;
    readonly Linear down_proj;

    /// <summary>Creates an MLP of width <paramref name="inter"/>.</summary>
    public SwiGluMlp(long hidden, long inter, ScalarType dtype, Device device) : base("SwiGluMlp")
    {
        gate_proj = new Linear(hidden, inter, dtype, device);
        up_proj = new Linear(hidden, inter, dtype, device);
        down_proj = new Linear(inter, hidden, dtype, device);
        RegisterComponents();
    }

    /// <inheritdoc />
    public override Tensor forward(Tensor x) => down_proj.forward(nn.functional.silu(gate_proj.forward(x)) * up_proj.forward(x));
}
