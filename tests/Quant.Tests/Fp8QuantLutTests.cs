using System.Runtime.Intrinsics;

namespace Mtp.Quant.Tests;

/// <summary>
/// The division-free BF16 -> E4M3 kernel (<see cref="Fp8QuantLut"/>) on every finite BF16 pattern against the independent
/// reference cast of the binary32 quotient, for divisors of every kind it serves: few or many significand bits, both signs,
/// the ends of the exponent range it takes, and the 1/s-inexact ones where a shortcut through a reciprocal would differ.
/// </summary>
[TestFixture, NonParallelizable]
public class Fp8QuantLutTests
{
    static IEnumerable<float> Divisors()
    {
        var rng = new Random(17);
        float[] chosen = [1f, -1f, 1.5f, 3f / 448, 1f - 1f / 1024, 1.9999999f, 1.0000001f, 0.007f, -0.0123f, 448f, 1e-3f, 2.5e-5f,
            MathF.ScaleB(1f, -100), MathF.ScaleB(1.9999999f, -100), MathF.ScaleB(1f, 100), MathF.ScaleB(1.9999999f, 100), -MathF.ScaleB(1.3f, 100)];
        foreach (float s in chosen) yield return s;
        for (int i = 0; i < 12; i++)
            yield return (rng.Next(2) == 0 ? 1 : -1) * MathF.ScaleB(1f + (float)rng.NextDouble(), rng.Next(-100, 101));
    }

    [Test]
    public unsafe void EveryBf16PatternMatchesTheReference()
    {
        if (!VectorWidth.Available512) Assert.Ignore("this CPU/runtime lacks AVX-512 F/BW/VBMI, so the kernel does not exist here");
        var w = Enumerable.Range(0, 65536).Select(i => (ushort)i).Where(b => (b & 0x7F80) != 0x7F80).ToArray();
        int n = w.Length & ~63;
        var codes = new byte[n];
        var tables = new byte[Fp8QuantLut.TableBytes];
        int tested = 0;
        foreach (float s in Divisors())
        {
            Assert.That(Fp8QuantLut.Serves(s), Is.True, $"divisor {s:R}");
            fixed (ushort* pw = w)
            fixed (byte* pc = codes, pt = tables)
            {
                int k = Fp8QuantLut.Build(s, pt);
                Vector512<ushort> acc = default;
                Assert.That(Fp8QuantLut.Row(pw, n, pt, k, pc, ref acc, track: false), Is.EqualTo(n));
            }
            for (int i = 0; i < n; i++)
            {
                float q = Ref.Bf16ToF32(w[i]) / s;
                byte want = Ref.ToE4M3(Math.Clamp(q, -448f, 448f));
                if (codes[i] != want)
                    Assert.Fail($"divisor {s:R}, BF16 0x{w[i]:X4}: code 0x{codes[i]:X2}, reference 0x{want:X2} (quotient {q:R})");
            }
            tested++;
        }
        Assert.That(tested, Is.GreaterThan(20));
    }

    [Test]
    public void ServesOnlyTheCoveredExponents()
    {
        Assert.That(Fp8QuantLut.Serves(MathF.ScaleB(1.9999999f, -101)), Is.False);
        Assert.That(Fp8QuantLut.Serves(MathF.ScaleB(1f, 101)), Is.False);
        Assert.That(Fp8QuantLut.Serves(float.Epsilon), Is.False);
        Assert.That(Fp8QuantLut.Serves(float.NaN), Is.False);
        Assert.That(Fp8QuantLut.Serves(float.NegativeInfinity), Is.False);
        Assert.That(Fp8QuantLut.Serves(0f), Is.False);
        Assert.That(Fp8QuantLut.Serves(-MathF.ScaleB(1f, -100)), Is.True);
    }

    [Test]
    public unsafe void TracksTheLargestMagnitude()
    {
        if (!VectorWidth.Available512) Assert.Ignore("this CPU/runtime lacks AVX-512 F/BW/VBMI, so the kernel does not exist here");
        var rng = new Random(5);
        var w = Enumerable.Range(0, 256).Select(_ => (ushort)rng.Next(0, 0x7F80)).Select(b => (ushort)(rng.Next(2) == 0 ? b : b | 0x8000)).ToArray();
        var tables = new byte[Fp8QuantLut.TableBytes];
        var codes = new byte[256];
        Vector512<ushort> acc = default;
        fixed (ushort* pw = w)
        fixed (byte* pc = codes, pt = tables)
            Fp8QuantLut.Row(pw, 256, pt, Fp8QuantLut.Build(0.01f, pt), pc, ref acc, track: true);
        int got = 0;
        for (int i = 0; i < 32; i++) got = Math.Max(got, acc.GetElement(i));
        Assert.That(got, Is.EqualTo(w.Max(b => b & 0x7FFF)));
    }
}
