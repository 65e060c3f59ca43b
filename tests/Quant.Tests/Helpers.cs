using System.Runtime.InteropServices;

namespace Mtp.Quant.Tests;

internal static class H
{
    public static byte[] Bytes<T>(T[] a) where T : struct => MemoryMarshal.AsBytes(a.AsSpan()).ToArray();
    public static T[] As<T>(byte[] b) where T : struct => MemoryMarshal.Cast<byte, T>(b).ToArray();

    /// <summary>Random scale grid bytes in a format; F32/BF16 log-uniform in [2^lo, 2^hi], E8M0 codes in [lo+127, hi+127].</summary>
    public static byte[] RandomScales(Random rng, int n, ScaleFormat fmt, int lo = -20, int hi = 4)
    {
        var f = new float[n];
        for (int i = 0; i < n; i++) f[i] = (float)Math.Pow(2, lo + rng.NextDouble() * (hi - lo));
        return fmt switch
        {
            ScaleFormat.F32 => Bytes(f),
            ScaleFormat.BF16 => Bytes(f.Select(Ref.ToBf16).ToArray()),
            _ => Enumerable.Range(0, n).Select(_ => (byte)rng.Next(lo + 127, hi + 128)).ToArray(),
        };
    }

    /// <summary>Independent scale decode from raw bytes.</summary>
    public static float Scale(byte[] s, ScaleFormat fmt, int i) => fmt switch
    {
        ScaleFormat.F32 => BitConverter.ToSingle(s, i * 4),
        ScaleFormat.BF16 => Ref.Bf16ToF32(BitConverter.ToUInt16(s, i * 2)),
        _ => (float)Ref.E8M0(s[i]),
    };

    public static int ScaleBytes(ScaleFormat f) => f == ScaleFormat.F32 ? 4 : f == ScaleFormat.BF16 ? 2 : 1;

    /// <summary>Reference output element bits (F32 bits or BF16 bits; BF16 NaN is 0x7FC0 as in PyTorch).</summary>
    public static uint Out(float product, FloatFormat fmt)
    {
        if (float.IsNaN(product) && fmt == FloatFormat.BF16) return 0x7FC0u;   // PyTorch's BF16 NaN
        return fmt == FloatFormat.F32 ? BitConverter.SingleToUInt32Bits(product) : Ref.ToBf16(product);
    }

    public static uint[] OutBits(byte[] output, FloatFormat fmt)
    {
        if (fmt == FloatFormat.F32) return As<uint>(output);
        return As<ushort>(output).Select(b => (uint)b).ToArray();
    }
}
