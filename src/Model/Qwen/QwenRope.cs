using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Mtp.Model.Qwen;

// Field names in these modules ARE the parameter names (TorchSharp registers fields by name), so they
// follow the checkpoint's snake_case.
#pragma warning disable IDE1006

/// <summary>Rotary helpers of Qwen: partial rotate-half RoPE on the first rotary dims of each head.</summary>
internal static class QwenRope
{
    /// <summary>inv_freq[i] = theta^(-2i / rotaryDim).</summary>
    public static double[] InverseFrequencies(int rotaryDim, double theta) => Rope.InverseFrequencies(rotaryDim, theta);

    /// <summary>
    /// cos/sin [B, 1, S, rotary/2] (F32) for positions [B, S]. Qwen3.5 uses interleaved MRoPE; for text-only
    /// input the temporal, height and width positions are all the token position, so every frequency sees the
    /// same position and MRoPE equals this 1-D RoPE (an assumption: no image/video tokens are trained).
    /// </summary>
    public static (Tensor Cos, Tensor Sin) CosSin(int rotaryDim, double theta, Tensor positions)
    {
        using var scope = NewDisposeScope();
        var inv = tensor(InverseFrequencies(rotaryDim, theta), dtype: ScalarType.Float64, device: positions.device);
        var angles = positions.to(ScalarType.Float64).unsqueeze(-1) * inv;
        var cos = angles.cos().to(ScalarType.Float32).unsqueeze(1);
        var sin = angles.sin().to(ScalarType.Float32).unsqueeze(1);
        return (cos.MoveToOuterDisposeScope(), sin.MoveToOuterDisposeScope());
    }
}
