namespace Mtp.Quant.Tests;

/// <summary>Independent reference arithmetic written from the format definitions (double precision, brute force).</summary>
internal static class Ref
{
    public static double E4M3(int c)
    {
        int s = c >> 7, e = (c >> 3) & 15, m = c & 7;
        if (e == 15 && m == 7) return double.NaN;
        double mag = e == 0 ? m / 8.0 * Math.Pow(2, 1 - 7) : (1 + m / 8.0) * Math.Pow(2, e - 7);
        return s == 1 ? -mag : mag;
    }

    public static double E5M2(int c)
    {
        int s = c >> 7, e = (c >> 2) & 31, m = c & 3;
        double mag;
        if (e == 31) mag = m == 0 ? double.PositiveInfinity : double.NaN;
        else mag = e == 0 ? m / 4.0 * Math.Pow(2, 1 - 15) : (1 + m / 4.0) * Math.Pow(2, e - 15);
        return s == 1 ? -mag : mag;
    }

    public static double E8M0(int c) => c == 255 ? double.NaN : Math.Pow(2, c - 127);

    public static readonly double[] Fp4 = [0, 0.5, 1, 1.5, 2, 3, 4, 6, -0.0, -0.5, -1, -1.5, -2, -3, -4, -6];

    /// <summary>Nearest of candidate magnitudes (index = magnitude code, increasing), ties to the even code.</summary>
    static int Nearest(double a, double[] mags)
    {
        int best = 0;
        for (int i = 1; i < mags.Length; i++)
        {
            double d = Math.Abs(a - mags[i]), db = Math.Abs(a - mags[best]);
            if (d < db || (d == db && i % 2 == 0 && best % 2 == 1)) best = i;
        }
        return best;
    }

    static readonly double[] E4M3Mags = Enumerable.Range(0, 128).Select(c => c == 127 ? 480.0 : E4M3(c)).ToArray();
    static readonly double[] E5M2Mags = Enumerable.Range(0, 125).Select(c => c == 124 ? 65536.0 : E5M2(c)).ToArray();

    /// <summary>PyTorch float8_e4m3fn cast: RNE on the grid extended by a virtual 480 at code 0x7F (=> NaN); NaN/inf -> 0x7F|sign.</summary>
    public static byte ToE4M3(float v)
    {
        int sign = float.IsNegative(v) ? 0x80 : 0;
        if (!float.IsFinite(v) || Math.Abs(v) >= 480) return (byte)(0x7F | sign);
        int c = Nearest(Math.Abs((double)v), E4M3Mags);
        return (byte)(c | sign);
    }

    /// <summary>E5M2 cast: RNE with overflow to infinity (code 0x7C = virtual 65536), NaN -> 0x7F|sign.</summary>
    public static byte ToE5M2(float v)
    {
        int sign = float.IsNegative(v) ? 0x80 : 0;
        if (float.IsNaN(v)) return (byte)(0x7F | sign);
        if (float.IsInfinity(v) || Math.Abs(v) >= 65536) return (byte)(0x7C | sign);
        return (byte)(Nearest(Math.Abs((double)v), E5M2Mags) | sign);
    }

    public static byte ToFp4(float v)
    {
        int sign = float.IsNegative(v) ? 8 : 0;
        double a = Math.Min(Math.Abs((double)v), 6.0);
        return (byte)(Nearest(a, Fp4.Take(8).ToArray()) | sign);
    }

    /// <summary>BF16 by comparing the two neighbouring truncations in double; ties to even.</summary>
    public static ushort ToBf16(float v)
    {
        uint b = BitConverter.SingleToUInt32Bits(v);
        if (float.IsNaN(v)) return 0x7FC0; // callers only check NaN-ness
        ushort lo = (ushort)(b >> 16);
        if ((b & 0xFFFF) == 0) return lo;
        ushort hi = (ushort)(lo + 1);
        double dl = Math.Abs(v - (double)BitConverter.UInt32BitsToSingle((uint)lo << 16));
        double hv = (hi & 0x7FFF) == 0x7F80 ? Math.Pow(2, 128) * Math.Sign(v) : BitConverter.UInt32BitsToSingle((uint)hi << 16);
        double dh = Math.Abs(v - hv);
        if (dl < dh) return lo;
        if (dh < dl) return hi;
        return (lo & 1) == 0 ? lo : hi;
    }

    public static float Bf16ToF32(ushort b) => BitConverter.UInt32BitsToSingle((uint)b << 16);
}
