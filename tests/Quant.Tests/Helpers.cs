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

    /// <summary>Reference output element bits (F32 bits or BF16 bits), NaN normalised to 0x7FC0/0x7FC00000.</summary>
    public static uint Out(float product, FloatFormat fmt)
    {
        if (float.IsNaN(product)) return fmt == FloatFormat.F32 ? 0x7FC00000u : 0x7FC0u;
        return fmt == FloatFormat.F32 ? BitConverter.SingleToUInt32Bits(product) : Ref.ToBf16(product);
    }

    public static uint[] OutBits(byte[] output, FloatFormat fmt)
    {
        if (fmt == FloatFormat.F32)
            return As<uint>(output).Select(b => (b & 0x7FFFFFFF) > 0x7F800000 ? 0x7FC00000u : b).ToArray();
        return As<ushort>(output).Select(b => (b & 0x7FFF) > 0x7F80 ? 0x7FC0u : b).ToArray();
    }
}
