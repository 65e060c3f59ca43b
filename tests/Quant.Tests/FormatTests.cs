namespace Mtp.Quant.Tests;

public class FormatTests
{
    static float F(uint bits) => BitConverter.UInt32BitsToSingle(bits);
    static uint B(float f) => BitConverter.SingleToUInt32Bits(f);

    [Test]
    public void E4M3_AllCodesDecodeToFormula()
    {
        for (int c = 0; c < 256; c++)
        {
            double want = Ref.E4M3(c);
            float got = Fp8E4M3.ToFloat((byte)c);
            if (double.IsNaN(want)) Assert.That(float.IsNaN(got), $"code 0x{c:X2}");
            else
            {
                Assert.That((double)got, Is.EqualTo(want), $"code 0x{c:X2}");
                Assert.That(float.IsNegative(got), Is.EqualTo(c >= 128), $"sign of 0x{c:X2}");
            }
        }
        Assert.That(Fp8E4M3.ToFloat(0x7E), Is.EqualTo(Fp8E4M3.MaxFinite));
        Assert.That(Fp8E4M3.ToFloat(0x01), Is.EqualTo(MathF.Pow(2, -9)));
    }

    [Test]
    public void E4M3_RoundTripsEveryNonNaNCode()
    {
        for (int c = 0; c < 256; c++)
        {
            if ((c & 0x7F) == 0x7F) continue;
            Assert.That(Fp8E4M3.FromFloat(Fp8E4M3.ToFloat((byte)c)), Is.EqualTo((byte)c), $"code 0x{c:X2}");
        }
    }

    [TestCase(448f, 0x7E)]
    [TestCase(464f, 0x7E)]
    [TestCase(464.0001f, 0x7F)]
    [TestCase(480f, 0x7F)]
    [TestCase(1e30f, 0x7F)]
    [TestCase(-464f, 0xFE)]
    [TestCase(-500f, 0xFF)]
    [TestCase(-0f, 0x80)]
    [TestCase(0f, 0x00)]
    [TestCase(0.001953125f, 0x01)]          // 2^-9, smallest subnormal
    [TestCase(0.0009765625f, 0x00)]         // 2^-10: tie with 0 -> even (0)
    [TestCase(0.00097656256f, 0x01)]        // just above 2^-10
    [TestCase(0.0029296875f, 0x02)]         // 1.5*2^-9: tie between codes 1 and 2 -> 2
    [TestCase(0.0048828125f, 0x02)]         // 2.5*2^-9: tie between 2 and 3 -> 2
    [TestCase(0.015625f, 0x08)]             // 2^-6 smallest normal
    [TestCase(0.0146484375f, 0x08)]         // 7.5*2^-9: tie between 7 (odd) and 8 -> 8
    [TestCase(1.0625f, 0x38)]               // tie between 1 and 1.125 -> 1
    [TestCase(1.1875f, 0x3A)]               // tie between 1.125 and 1.25 -> 1.25
    [TestCase(float.PositiveInfinity, 0x7F)]
    [TestCase(float.NegativeInfinity, 0xFF)]
    public void E4M3_EncodeEdgeCases(float v, int code)
    {
        Assert.That(Fp8E4M3.FromFloat(v), Is.EqualTo((byte)code));
        Assert.That(Ref.ToE4M3(v), Is.EqualTo((byte)code), "reference agrees");
    }

    [Test]
    public void E4M3_NaNKeepsSign()
    {
        Assert.That(Fp8E4M3.FromFloat(float.NaN) & 0x7F, Is.EqualTo(0x7F));
        Assert.That(Fp8E4M3.FromFloat(F(0x7FC00000)), Is.EqualTo(0x7F));
        Assert.That(Fp8E4M3.FromFloat(F(0xFFC00000)), Is.EqualTo(0xFF));
        Assert.That(B(Fp8E4M3.ToFloat(0x7F)), Is.EqualTo(0x7FF00000u), "PyTorch's NaN bits");
        Assert.That(B(Fp8E4M3.ToFloat(0xFF)), Is.EqualTo(0xFFF00000u), "PyTorch's NaN bits");
    }

    [Test]
    public void E4M3_RandomValuesMatchBruteForce()
    {
        var rng = new Random(1);
        for (int i = 0; i < 200_000; i++)
        {
            float v = i % 2 == 0
                ? (float)((rng.NextDouble() * 2 - 1) * Math.Pow(2, rng.Next(-14, 10)))
                : F((uint)rng.Next(0x30000000, 0x44000000) | (rng.Next(2) == 0 ? 0 : 0x80000000));
            Assert.That(Fp8E4M3.FromFloat(v), Is.EqualTo(Ref.ToE4M3(v)), $"{v:R} bits 0x{B(v):X8}");
        }
        // every midpoint between adjacent codes, and its neighbours
        for (int c = 0; c < 126; c++)
        {
            float mid = (float)((Ref.E4M3(c) + Ref.E4M3(c + 1)) / 2);
            foreach (float v in new[] { mid, MathF.BitDecrement(mid), MathF.BitIncrement(mid), -mid })
                Assert.That(Fp8E4M3.FromFloat(v), Is.EqualTo(Ref.ToE4M3(v)), $"{v:R}");
        }
    }

    [Test]
    public void E5M2_AllCodesAndRoundTrips()
    {
        for (int c = 0; c < 256; c++)
        {
            double want = Ref.E5M2(c);
            float got = Fp8E5M2.ToFloat((byte)c);
            if (double.IsNaN(want)) { Assert.That(float.IsNaN(got), $"code 0x{c:X2}"); continue; }
            Assert.That((double)got, Is.EqualTo(want), $"code 0x{c:X2}");
            Assert.That(Fp8E5M2.FromFloat(got), Is.EqualTo((byte)c), $"round trip 0x{c:X2}");
        }
        Assert.That(Fp8E5M2.ToFloat(0x7B), Is.EqualTo(Fp8E5M2.MaxFinite));
    }

    [TestCase(57344f, 0x7B)]
    [TestCase(61439.996f, 0x7B)]
    [TestCase(61440f, 0x7C)]
    [TestCase(1e9f, 0x7C)]
    [TestCase(-1e9f, 0xFC)]
    [TestCase(float.PositiveInfinity, 0x7C)]
    [TestCase(-0f, 0x80)]
    [TestCase(0.0000152587890625f, 0x01)]   // 2^-16
    [TestCase(0.00000762939453125f, 0x00)]  // 2^-17 tie -> 0
    public void E5M2_EncodeEdgeCases(float v, int code)
    {
        Assert.That(Fp8E5M2.FromFloat(v), Is.EqualTo((byte)code));
        Assert.That(Ref.ToE5M2(v), Is.EqualTo((byte)code), "reference agrees");
    }

    [Test]
    public void E5M2_RandomValuesMatchBruteForce()
    {
        var rng = new Random(2);
        for (int i = 0; i < 100_000; i++)
        {
            float v = (float)((rng.NextDouble() * 2 - 1) * Math.Pow(2, rng.Next(-20, 17)));
            Assert.That(Fp8E5M2.FromFloat(v), Is.EqualTo(Ref.ToE5M2(v)), $"{v:R}");
        }
        Assert.That(Fp8E5M2.FromFloat(float.NaN) & 0x7F, Is.EqualTo(0x7F));
    }

    [Test]
    public void E8M0_AllCodes()
    {
        for (int c = 0; c < 256; c++)
        {
            double want = Ref.E8M0(c);
            float got = E8M0.ToFloat((byte)c);
            if (double.IsNaN(want)) { Assert.That(float.IsNaN(got)); continue; }
            Assert.That((double)got, Is.EqualTo(want), $"code {c}");
            Assert.That(E8M0.FromPowerOfTwo(got), Is.EqualTo((byte)c), $"FromPowerOfTwo {c}");
            Assert.That(E8M0.CeilLog2Code(got), Is.EqualTo((byte)c), $"CeilLog2Code exact {c}");
            if (c < 254)
                Assert.That(E8M0.CeilLog2Code(MathF.BitIncrement(got)), Is.EqualTo((byte)(c + 1)), $"CeilLog2Code above {c}");
            if (c > 0)
                Assert.That(E8M0.CeilLog2Code(MathF.BitDecrement(got)), Is.EqualTo((byte)c), $"CeilLog2Code below {c}");
        }
        Assert.That(E8M0.ToFloat(0), Is.GreaterThan(0f), "code 0 is 2^-127, not 0 (OCP)");
    }

    [Test]
    public void E8M0_Edges()
    {
        Assert.That(E8M0.CeilLog2Code(0f), Is.EqualTo(0));
        Assert.That(E8M0.CeilLog2Code(-5f), Is.EqualTo(0));
        Assert.That(E8M0.CeilLog2Code(float.Epsilon), Is.EqualTo(0));
        Assert.That(E8M0.CeilLog2Code(float.PositiveInfinity), Is.EqualTo(254));
        Assert.That(E8M0.CeilLog2Code(float.MaxValue), Is.EqualTo(254));
        Assert.That(E8M0.CeilLog2Code(float.NaN), Is.EqualTo(255));
        Assert.That(E8M0.CeilLog2Code(3f), Is.EqualTo(129));
        Assert.That(E8M0.CeilLog2Code(0.75f), Is.EqualTo(127));
        Assert.That(() => E8M0.FromPowerOfTwo(3f), Throws.ArgumentException);
        Assert.That(() => E8M0.FromPowerOfTwo(float.NaN), Throws.ArgumentException);
        Assert.That(() => E8M0.FromPowerOfTwo(MathF.Pow(2, -128)), Throws.ArgumentException);
        Assert.That(() => E8M0.FromPowerOfTwo(-1f), Throws.ArgumentException);
        Assert.That(() => E8M0.FromPowerOfTwo(float.PositiveInfinity), Throws.ArgumentException);
    }

    [Test]
    public void Fp4_AllCodes()
    {
        for (int c = 0; c < 16; c++)
        {
            float got = Fp4E2M1.ToFloat(c);
            Assert.That((double)got, Is.EqualTo(Ref.Fp4[c]), $"nibble {c}");
            Assert.That(float.IsNegative(got), Is.EqualTo(c >= 8), $"sign of {c}");
            Assert.That(Fp4E2M1.FromFloat(got), Is.EqualTo((byte)c), $"round trip {c}");
        }
        Assert.That(Fp4E2M1.ToFloat(0x37), Is.EqualTo(6f), "only the low nibble counts");
    }

    [TestCase(0.25f, 0)] [TestCase(0.2500001f, 1)] [TestCase(0.75f, 2)] [TestCase(1.25f, 2)] [TestCase(1.75f, 4)]
    [TestCase(2.5f, 4)] [TestCase(3.5f, 6)] [TestCase(5f, 6)] [TestCase(5.0001f, 7)] [TestCase(7f, 7)] [TestCase(100f, 7)]
    [TestCase(-100f, 15)] [TestCase(-0f, 8)] [TestCase(float.PositiveInfinity, 7)]
    public void Fp4_EncodeEdgeCases(float v, int code)
    {
        Assert.That(Fp4E2M1.FromFloat(v), Is.EqualTo((byte)code));
        Assert.That(Ref.ToFp4(v), Is.EqualTo((byte)code), "reference agrees");
    }

    [Test]
    public void Fp4_RandomMatchesBruteForceAndNaNThrows()
    {
        var rng = new Random(3);
        for (int i = 0; i < 50_000; i++)
        {
            float v = (float)((rng.NextDouble() * 2 - 1) * 8);
            Assert.That(Fp4E2M1.FromFloat(v), Is.EqualTo(Ref.ToFp4(v)), $"{v:R}");
        }
        Assert.That(() => Fp4E2M1.FromFloat(float.NaN), Throws.ArgumentException);
    }

    [TestCase(0x3F808000u, (ushort)0x3F80)]   // tie, even stays
    [TestCase(0x3F818000u, (ushort)0x3F82)]   // tie, odd rounds up
    [TestCase(0x3F808001u, (ushort)0x3F81)]
    [TestCase(0x3F807FFFu, (ushort)0x3F80)]
    [TestCase(0x7F7FFFFFu, (ushort)0x7F80)]   // max float -> inf
    [TestCase(0x7F800000u, (ushort)0x7F80)]
    [TestCase(0xFF800000u, (ushort)0xFF80)]
    [TestCase(0x80000000u, (ushort)0x8000)]
    [TestCase(0x00008000u, (ushort)0x0000)]   // subnormal tie to even
    [TestCase(0x00018000u, (ushort)0x0002)]
    public void Bf16_Rounding(uint bits, ushort want)
    {
        Assert.That(BFloat16.FromFloat(F(bits)), Is.EqualTo(want));
        Assert.That(Ref.ToBf16(F(bits)), Is.EqualTo(want), "reference agrees");
    }

    [Test]
    public void Bf16_NaNStaysNaNAndRandomMatchesReference()
    {
        foreach (uint nan in new[] { 0x7FC00000u, 0xFFC00000u, 0x7F800001u, 0x7F80FFFFu, 0xFF800001u, 0x7FFFFFFFu })
        {
            ushort b = BFloat16.FromFloat(F(nan));
            Assert.That(float.IsNaN(BFloat16.ToFloat(b)), $"NaN 0x{nan:X8} -> 0x{b:X4}");
            Assert.That(b, Is.EqualTo((ushort)0x7FC0), "PyTorch canonical NaN");
        }
        var rng = new Random(4);
        for (int i = 0; i < 200_000; i++)
        {
            uint bits = (uint)rng.NextInt64(0, 1L << 32);
            if (i % 3 == 0) bits = (bits & 0xFFFF0000u) | 0x8000u; // ties
            float v = F(bits);
            if (float.IsNaN(v)) continue;
            Assert.That(BFloat16.FromFloat(v), Is.EqualTo(Ref.ToBf16(v)), $"0x{bits:X8}");
        }
        for (uint hi = 0; hi < 0x10000; hi++)
        {
            float v = BFloat16.ToFloat((ushort)hi);
            if (float.IsNaN(v)) continue;
            Assert.That(BFloat16.FromFloat(v), Is.EqualTo((ushort)hi), "round trip");
            Assert.That(B(v), Is.EqualTo(hi << 16));
        }
    }
}
