using Mtp.SafeTensors;

namespace Mtp.Adapters;

/// <summary>How a family names the scale tensor of a block-quantized weight.</summary>
/// <param name="Suffix">What is appended: <c>_scale_inv</c> (HF's FP8 convention) or <c>.scale</c> (DeepSeek-V4).</param>
/// <param name="ReplacesWeight">Whether the suffix replaces a trailing <c>.weight</c> (<c>x.weight</c> -> <c>x.scale</c>)
/// instead of following the whole name (<c>x.weight</c> -> <c>x.weight_scale_inv</c>).</param>
public sealed record ScaleNaming(string Suffix, bool ReplacesWeight)
{
    /// <summary>HF's FP8 naming: <c>x.weight_scale_inv</c> (a multiplier despite the name).</summary>
    public static readonly ScaleNaming ScaleInv = new("_scale_inv", false);
    /// <summary>DeepSeek-V4's naming: <c>x.scale</c> beside <c>x.weight</c>.</summary>
    public static readonly ScaleNaming DotScale = new(".scale", true);
    /// <summary>compressed-tensors' naming: <c>x.weight_scale</c> (see <see cref="CompressedTensors"/>).</summary>
    public static readonly ScaleNaming WeightScale = new("_scale", false);

    /// <summary>The scale tensor name of the quantized weight <paramref name="weight"/>.</summary>
    public string ScaleNameOf(string weight) =>
        ReplacesWeight && weight.EndsWith(".weight", StringComparison.Ordinal) ? weight[..^".weight".Length] + Suffix : weight + Suffix;
}

/// <summary>A family's quantization scheme: how scales are named and what new scales default to.</summary>
/// <param name="Naming">Scale tensor naming.</param>
/// <param name="ScaleDType">Dtype of FP8 block scales written without a reference scale (F32, or E8M0 for DeepSeek-V4).</param>
/// <param name="BlockSize">FP8 block edge when config.json gives no <c>weight_block_size</c>.</param>
/// <param name="Fp4Group">Columns per E8M0 scale of packed FP4 weights when no reference says otherwise.</param>
public sealed record QuantScheme(ScaleNaming Naming, DType ScaleDType, int BlockSize = 128, int Fp4Group = 32)
{
    /// <summary>The scale tensor name of the quantized weight <paramref name="weight"/>.</summary>
    public string ScaleNameOf(string weight) => Naming.ScaleNameOf(weight);

    /// <summary>
    /// The weights whose scale grid restarts every chunk of rows (MiMo-V2-Flash's full-attention k_proj, per KV head), read
    /// only when the stored grid has that shape (<see cref="TensorBlocks"/>); null: every weight is blocked uniformly.
    /// </summary>
    public RowChunkRule? RowChunks { get; init; }
}
