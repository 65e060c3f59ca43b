namespace Mtp.Quant.Tests;

/// <summary>
/// Every one of the 65,536 BF16 bit patterns at scales across the accepted ranges, on both vector paths, for the plain and
/// the verified entry points of <see cref="ExactEncode"/>, against a brute-force reference written here: a pattern is
/// exact when some non-NaN code times the scale, computed in double from <see cref="Ref"/>'s format definitions, is that
/// BF16 number bit for bit (sign of zero included). Exact patterns must all be given their code; every other pattern,
/// alone among zeros, must make the call answer false.
/// </summary>
[TestFixture, NonParallelizable]
public class ExactEncodeExhaustiveTests
{
    /// <summary>The BF16 bits of <paramref name="v"/> when it is exactly a BF16 number, else -1.</summary>
    static int ExactBf16(double v)
    {
        float f = (float)v;
        uint b = BitConverter.SingleToUInt32Bits(f);
        return f == v && (b & 0xFFFF) == 0 && !float.IsNaN(f) ? (int)(b >> 16) : -1;
    }

    /// <summary>Code for each BF16 pattern (-1: none); asserts that no pattern has two codes.</summary>
    static int[] Reference(int codes, Func<int, double> decode, int scale)
    {
        var code = Enumerable.Repeat(-1, 65536).ToArray();
        for (int c = 0; c < codes; c++)
        {
            double d = decode(c);
            if (double.IsNaN(d)) continue;
            int p = ExactBf16(d * Ref.E8M0(scale));
            if (p < 0) continue;
            Assert.That(code[p], Is.EqualTo(-1), $"pattern 0x{p:X4} has two codes at scale {scale}");
            code[p] = c;
        }
        return code;
    }

    static IEnumerable<(bool Use512, bool Verified)> Variants()
    {
        foreach (bool wide in VectorWidth.Available512 ? new[] { false, true } : new[] { false })
            foreach (bool verified in new[] { false, true })
                yield return (wide, verified);
    }

    static void OnPath(bool use512, Action run)
    {
        bool saved = VectorWidth.Use512;
        try { VectorWidth.Use512 = use512; run(); }
        finally { VectorWidth.Use512 = saved; }
    }

    static byte[] Bf16Row(IEnumerable<int> patterns, int cols)
    {
        var b = new byte[cols * 2];
        int i = 0;
        foreach (int p in patterns) { b[2 * i] = (byte)p; b[2 * i + 1] = (byte)(p >> 8); i++; }
        return b;
    }

    /// <summary>Every pattern without a code (want -1), alone among zeros in a row of <paramref name="cols"/> at column pattern % cols, must be refused.</summary>
    static void AssertInexactRefused(int[] want, int cols, Func<byte[], bool> run, string what)
    {
        var input = new byte[cols * 2];
        for (int p = 0; p < 65536; p++)
        {
            if (want[p] >= 0) continue;
            int at = p % cols;
            input[2 * at] = (byte)p; input[2 * at + 1] = (byte)(p >> 8);
            if (run(input)) Assert.Fail($"pattern 0x{p:X4} at column {at} accepted at {what}");
            input[2 * at] = 0; input[2 * at + 1] = 0;
        }
    }

    [TestCase(ExactEncode.Fp8ScaleMin), TestCase(ExactEncode.Fp8ScaleMin + 1), TestCase(60), TestCase(127), TestCase(200),
     TestCase(ExactEncode.Fp8ScaleMax)]
    public void Fp8EveryBf16Pattern(int scale)
    {
        int[] want = Reference(256, Ref.E4M3, scale);
        var exact = Enumerable.Range(0, 65536).Where(p => want[p] >= 0).ToArray();
        Assert.That(exact.Length, Is.EqualTo(254), "every finite E4M3 code, +0 and -0 included, is a distinct BF16 number");
        const int cols = 256;
        var block = new BlockSize(1, cols);
        var s = new[] { (byte)scale };
        foreach (var (wide, verified) in Variants())
            OnPath(wide, () =>
            {
                bool Run(byte[] input, byte[] codes) => verified
                    ? ExactEncode.Fp8Verified(input, 1, cols, s, block, codes, new KernelOptions { MaxThreads = 1 })
                    : ExactEncode.Fp8(input, 1, cols, s, block, codes, new KernelOptions { MaxThreads = 1 });
                var codes = new byte[cols];
                Assert.That(Run(Bf16Row(exact, cols), codes), Is.True, $"all exact patterns, 512 {wide}, verified {verified}");
                for (int i = 0; i < exact.Length; i++)
                    Assert.That(codes[i], Is.EqualTo(want[exact[i]]), $"pattern 0x{exact[i]:X4}");
                AssertInexactRefused(want, cols, input => Run(input, codes), $"scale {scale} (512 {wide}, verified {verified})");
            });
    }

    [TestCase(ExactEncode.Fp4ScaleMin), TestCase(ExactEncode.Fp4ScaleMin + 1), TestCase(60), TestCase(127), TestCase(200),
     TestCase(ExactEncode.Fp4ScaleMax)]
    public void Fp4EveryBf16Pattern(int scale)
    {
        int[] want = Reference(16, c => Ref.Fp4[c], scale);
        var exact = Enumerable.Range(0, 65536).Where(p => want[p] >= 0).ToArray();
        Assert.That(exact.Length, Is.EqualTo(16));
        const int cols = 64;
        var s = new[] { (byte)scale, (byte)scale };
        foreach (var (wide, verified) in Variants())
            OnPath(wide, () =>
            {
                bool Run(byte[] input, byte[] packed) => verified
                    ? ExactEncode.Fp4Verified(input, 1, cols, s, 32, packed, new KernelOptions { MaxThreads = 1 })
                    : ExactEncode.Fp4(input, 1, cols, s, 32, packed, new KernelOptions { MaxThreads = 1 });
                var packed = new byte[cols / 2];
                // Each exact pattern in both nibble positions and both groups.
                var order = Enumerable.Range(0, cols).Select(i => exact[(i * 5 + i / 16) % 16]).ToArray();
                Assert.That(Run(Bf16Row(order, cols), packed), Is.True, $"all exact patterns, 512 {wide}, verified {verified}");
                for (int i = 0; i < cols; i++)
                    Assert.That((packed[i / 2] >> (i % 2 * 4)) & 15, Is.EqualTo(want[order[i]]), $"column {i}, pattern 0x{order[i]:X4}");
                AssertInexactRefused(want, cols, input => Run(input, packed), $"scale {scale} (512 {wide}, verified {verified})");
            });
    }

    [Test]
    public void OneBadValueInTheLastTaskIsFoundWithTwoThreads()
    {
        // 300 rows of 1024 columns: several tasks; the bad value is in the last row.
        const int rows = 300, cols = 1024;
        var block = new BlockSize(128, 128);
        var (gr, gc) = block.GridFor(rows, cols);
        var scales8 = Enumerable.Repeat((byte)127, gr * gc).ToArray();
        var scales4 = Enumerable.Repeat((byte)127, rows * cols / 32).ToArray();
        var input = new byte[rows * cols * 2];
        var two = new KernelOptions { MaxThreads = 2 };
        foreach (var (wide, verified) in Variants())
            OnPath(wide, () =>
            {
                Assert.That(verified ? ExactEncode.Fp8Verified(input, rows, cols, scales8, block, new byte[rows * cols], two)
                    : ExactEncode.Fp8(input, rows, cols, scales8, block, new byte[rows * cols], two), Is.True);
                Assert.That(verified ? ExactEncode.Fp4Verified(input, rows, cols, scales4, 32, new byte[rows * cols / 2], two)
                    : ExactEncode.Fp4(input, rows, cols, scales4, 32, new byte[rows * cols / 2], two), Is.True);
                // 0x3F81 = 1 + 2^-7 in the last-but-one column: neither an E4M3 nor an E2M1 value at scale 2^0.
                input[input.Length - 3] = 0x3F;
                input[input.Length - 4] = 0x81;
                Assert.That(verified ? ExactEncode.Fp8Verified(input, rows, cols, scales8, block, new byte[rows * cols], two)
                    : ExactEncode.Fp8(input, rows, cols, scales8, block, new byte[rows * cols], two), Is.False, $"FP8 512 {wide} verified {verified}");
                Assert.That(verified ? ExactEncode.Fp4Verified(input, rows, cols, scales4, 32, new byte[rows * cols / 2], two)
                    : ExactEncode.Fp4(input, rows, cols, scales4, 32, new byte[rows * cols / 2], two), Is.False, $"FP4 512 {wide} verified {verified}");
                input[input.Length - 3] = 0; input[input.Length - 4] = 0;
            });
    }
}
