using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Mtp.Model;

// Field names in these modules ARE the parameter names (TorchSharp registers fields by name), so they
// follow the checkpoint's snake_case and are exempt from C# naming conventions.
#pragma warning disable IDE1006

/// <summary>Creates parameters directly in the target dtype and device (no float32 detour).</summary>
internal static class P
{
    [ThreadStatic] static bool t_unfilled;

    /// <summary>
    /// While the returned scope lives (on this thread), parameters are allocated without being filled: a strict load
    /// overwrites every one of them (or fails and disposes the model), and filling 4 GB of BF16 with zeros first took
    /// more time than loading it.
    /// </summary>
    public static IDisposable ForLoading()
    {
        bool outer = t_unfilled;
        t_unfilled = true;
        return new Restore(outer);
    }

    sealed class Restore(bool outer) : IDisposable
    {
        public void Dispose() => t_unfilled = outer;
    }

    public static Parameter Make(long[] shape, ScalarType dtype, Device device, bool ones = false) =>
        new(t_unfilled ? torch.empty(shape, dtype: dtype, device: device)
            : ones ? torch.ones(shape, dtype: dtype, device: device) : torch.zeros(shape, dtype: dtype, device: device), requires_grad: true);
}
