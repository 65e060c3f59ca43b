using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Mtp.Quant;

/// <summary>
/// Which vector paths the kernels take. The Vector512 paths need AVX-512 F, BW and VBMI (byte permutes); without them, or
/// with <c>MTP_KERNELS_NO_AVX512=1</c> in the environment, the Vector256 paths run (the AVX2 behaviour). Tests flip
/// <see cref="Use512"/> to run both paths on one machine.
/// </summary>
internal static class VectorWidth
{
    /// <summary>True when this CPU and runtime accelerate every instruction the Vector512 paths use.</summary>
    internal static readonly bool Available512 = Vector512.IsHardwareAccelerated && Avx512F.IsSupported && Avx512BW.IsSupported
        && Avx512Vbmi.IsSupported;

    /// <summary>Whether the kernels take their Vector512 paths (never true when <see cref="Available512"/> is false).</summary>
    internal static bool Use512 { get; set { field = value && Available512; } } =
        Available512 && Environment.GetEnvironmentVariable("MTP_KERNELS_NO_AVX512") != "1";
}
