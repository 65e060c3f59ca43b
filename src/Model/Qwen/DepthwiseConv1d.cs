using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Mtp.Model.Qwen;

// Field names in these modules ARE the parameter names (TorchSharp registers fields by name), so they
// follow the checkpoint's snake_case.
#pragma warning disable IDE1006

/// <summary>Depthwise causal convolution weight holder: <c>weight</c> [channels, 1, kernel].</summary>
public sealed class DepthwiseConv1d : nn.Module<Tensor, Tensor>
{
    readonly Parameter weight;
    readonly long _channels, _kernel;

    /// <summary>Creates a zero kernel.</summary>
    public DepthwiseConv1d(long channels, long kernel, ScalarType dtype, Device device) : base("DepthwiseConv1d")
    {
        _channels = channels;
        _kernel = kernel;
        weight = new Parameter(zeros(new[] { channels, 1L, kernel }, dtype: dtype, device: device), requires_grad: true);
        RegisterComponents();
    }

    /// <summary>x [N, L, C] → causal depthwise convolution [N, L, C] (left zero padding of kernel-1; no activation).</summary>
    public override Tensor forward(Tensor x)
    {
        long l = x.shape[1];
        var y = nn.functional.conv1d(x.transpose(1, 2), weight, padding: _kernel - 1, groups: _channels);
        return y.narrow(-1, 0, l).transpose(1, 2);
    }
}
