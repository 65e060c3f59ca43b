namespace Mtp.Quant.Tests;

/// <summary>
/// The Vector512 kernels (AVX-512 F/BW/VBMI) against the Vector256 ones on the same inputs, in the same run: every output
/// byte, scale and report must be equal. Inputs are random bit patterns plus the edge cases (NaN/Inf codes and scales,
/// subnormal products, rounding ties, saturation, odd lengths and partial blocks); the dequantizers are also checked
/// against the independent reference decoder in <see cref="Ref"/>.
/// </summary>
[TestFixture, NonParallelizable]
public class VectorPathTests
{
    static readonly KernelOptions AnyScale = new() { AllowNonFiniteScales = true };

    /// <summary>Runs <paramref name="run"/> on the Vector256 path, then on the Vector512 path.</summary>
    static (T V256, T V512) BothPaths<T>(Func<T> run)
    {
        if (!VectorWidth.Available512)
            Assert.Ignore("this CPU/runtime lacks AVX-512 F/BW/VBMI, so only the Vector256 path exists here");
        bool saved = VectorWidth.Use512;
        try
        {
            VectorWidth.Use512 = false;
            T a = run();
            VectorWidth.Use512 = true;
            T b = run();
            return (a, b);
        }
        finally { VectorWidth.Use512 = saved; }
    }

    static void AssertSameBytes(byte[] v256, byte[] v512, string what)
    {
        Assert.That(v512.Length, Is.EqualTo(v256.Length), what);
        for (int i = 0; i < v256.Length; i++)
            if (v256[i] != v512[i]) Assert.Fail($"{what}: byte {i} is 0x{v512[i]:X2} on the Vector512 path, 0x{v256[i]:X2} on the Vector256 path");
    }

    /// <summary>Scales of a format: random bit patterns (any value, NaN and Inf included) mixed with chosen edge cases.</summary>
    static byte[] EdgeScales(Random rng, int n, ScaleFormat fmt)
    {
        if (fmt == ScaleFormat.E8M0)
        {
            var e = new byte[n];
            rng.NextBytes(e);
            for (int i = 0; i < Math.Min(n, 6); i++) e[i] = new byte[] { 0, 1, 127, 254, 255, 10 }[i];
            return e;
        }
        float[] special = [1f + 1f / 256, 1f + 3f / 256, 1f - 1f / 512, 3f / 256, 1e-40f, float.Epsilon, 1.1754944e-38f, 2e-39f,
            0f, -0f, -1.5f, float.NaN, float.PositiveInfinity, float.NegativeInfinity, 1e38f, 3e36f, 2f, 0.5f];
        var f = new float[n];
        for (int i = 0; i < n; i++)
            f[i] = rng.Next(3) switch
            {
                0 => special[rng.Next(special.Length)],
                1 => (float)(Math.Pow(2, rng.Next(-140, 20)) * (1 + rng.NextDouble())),
                _ => BitConverter.UInt32BitsToSingle((uint)rng.NextInt64(0, 1L << 32)),
            };
        return fmt == ScaleFormat.F32 ? H.Bytes(f) : H.Bytes(f.Select(v => float.IsNaN(v) ? (ushort)0x7FC1 : Ref.ToBf16(v)).ToArray());
    }

    static byte[] Fp8Dequant(byte[] codes, int rows, int cols, byte[] scales, ScaleFormat sf, BlockSize block, FloatFormat of, int threads)
    {
        var o = new byte[rows * cols * BlockDequant.BytesPerElement(of)];
        BlockDequant.Fp8(codes, rows, cols, scales, sf, block, o, of, AnyScale with { MaxThreads = threads });
        return o;
    }

    /// <summary>Reference bits: NaN compares as "some NaN" for F32 output (the payload is not part of the contract).</summary>
    static void AssertMatchesReference(byte[] output, FloatFormat of, int count, Func<int, float> product, string what)
    {
        uint[] bits = H.OutBits(output, of);
        for (int i = 0; i < count; i++)
        {
            float p = product(i);
            if (of == FloatFormat.F32 && float.IsNaN(p) && float.IsNaN(BitConverter.UInt32BitsToSingle(bits[i]))) continue;
            uint want = H.Out(p, of);
            if (bits[i] != want) Assert.Fail($"{what}: element {i} is 0x{bits[i]:X} where the reference gives 0x{want:X} (product {p:R})");
        }
    }

    [TestCase(300, 200, 128, 128, 1)]
    [TestCase(256, 384, 128, 128, 2)]
    [TestCase(131, 77, 32, 16, 1)]
    [TestCase(64, 1000, 64, 96, 2)]
    [TestCase(7, 130, 1, 130, 1)]
    [TestCase(40, 256, 3, 256, 2)]
    public void Fp8DequantMatches(int rows, int cols, int b0, int b1, int threads)
    {
        var block = new BlockSize(b0, b1);
        var (gr, gc) = block.GridFor(rows, cols);
        var rng = new Random(rows * 31 + cols);
        var codes = new byte[rows * cols];
        rng.NextBytes(codes);
        for (int i = 0; i < Math.Min(codes.Length, 256); i++) codes[i] = (byte)i;   // every code, NaN ones included
        foreach (ScaleFormat sf in Enum.GetValues<ScaleFormat>())
        {
            byte[] scales = EdgeScales(rng, gr * gc, sf);
            foreach (FloatFormat of in Enum.GetValues<FloatFormat>())
            {
                string what = $"FP8 [{rows}, {cols}] block {b0}x{b1} {sf} scales -> {of}";
                var (a, b) = BothPaths(() => Fp8Dequant(codes, rows, cols, scales, sf, block, of, threads));
                AssertSameBytes(a, b, what);
                AssertMatchesReference(b, of, rows * cols,
                    i => (float)Ref.E4M3(codes[i]) * H.Scale(scales, sf, i / cols / b0 * gc + i % cols / b1), what);
            }
        }
    }

    [TestCase(37, 100, 32, 1)]
    [TestCase(64, 256, 64, 2)]
    [TestCase(16, 192, 96, 1)]
    [TestCase(20, 64, 16, 1)]
    [TestCase(300, 4096, 32, 2)]
    public void Fp4DequantMatches(int rows, int cols, int groupSize, int threads)
    {
        int groups = (cols + groupSize - 1) / groupSize;
        var rng = new Random(rows + cols * 7 + groupSize);
        var packed = new byte[rows * cols / 2];
        rng.NextBytes(packed);
        byte[] scales = EdgeScales(rng, rows * groups, ScaleFormat.E8M0);
        foreach (FloatFormat of in Enum.GetValues<FloatFormat>())
        {
            string what = $"FP4 [{rows}, {cols}] group {groupSize} -> {of}";
            var (a, b) = BothPaths(() =>
            {
                var o = new byte[rows * cols * BlockDequant.BytesPerElement(of)];
                BlockDequant.Fp4(packed, rows, cols, scales, groupSize, o, of, AnyScale with { MaxThreads = threads });
                return o;
            });
            AssertSameBytes(a, b, what);
            AssertMatchesReference(b, of, rows * cols, i =>
            {
                int r = i / cols, c = i % cols;
                int nib = (packed[i / 2] >> (4 * (c & 1))) & 15;
                return (float)Ref.Fp4[nib] * (float)Ref.E8M0(scales[r * groups + c / groupSize]);
            }, what);
        }
    }

    /// <summary>
    /// A finite weight for block scale <paramref name="s"/>: an exact E4M3 rounding tie (w / s is exactly halfway between two
    /// codes, which only a true division finds), a code times s, a value around the 448/464 bounds, a zero or subnormal, or
    /// random bits.
    /// </summary>
    static float EdgeWeight(Random rng, float s)
    {
        switch (rng.Next(5))
        {
            case 0:
                int c = rng.Next(0, 125);
                float mid = (float)((Ref.E4M3(c) + Ref.E4M3(c + 1)) / 2);
                // Prefer a w whose quotient is the tie while w * (1 / s) misses it: that tells a division from its shortcut.
                float v0 = (float)((double)mid * s), best = v0;
                for (int k = -8; k <= 8; k++)
                {
                    float v = BitConverter.Int32BitsToSingle(BitConverter.SingleToInt32Bits(v0) + k);
                    if (v / s != mid) continue;
                    best = v;
                    if (v * (1f / s) != mid) break;
                }
                return best;
            case 1: return (float)Ref.E4M3(rng.Next(0, 127)) * s * (rng.Next(2) == 0 ? 1 : -1);
            case 2: return s * (float)(440 + rng.NextDouble() * 40);
            case 3: return new[] { 0f, -0f, float.Epsilon, -1e-40f, 1e-39f }[rng.Next(5)];
            default:
                float r;
                do r = BitConverter.UInt32BitsToSingle((uint)rng.NextInt64(0, 1L << 32)); while (!float.IsFinite(r) || MathF.Abs(r) > 1e30f);
                return r;
        }
    }

    [TestCase(300, 200, 128, 128, 1)]
    [TestCase(131, 77, 32, 16, 2)]
    [TestCase(64, 1000, 64, 96, 1)]
    public void Fp8QuantMatches(int rows, int cols, int b0, int b1, int threads)
    {
        var block = new BlockSize(b0, b1);
        var (gr, gc) = block.GridFor(rows, cols);
        var rng = new Random(rows + cols + b1);
        foreach (ScaleFormat sf in Enum.GetValues<ScaleFormat>())
        {
            byte[] scales = H.RandomScales(rng, gr * gc, sf, -20, 4);
            // Every other scale has few significant bits, so that ties stay exact in BF16 weights and 1/s is inexact.
            if (sf != ScaleFormat.E8M0)
                for (int i = 0; i < gr * gc; i += 2)
                {
                    float few = (1 + rng.Next(1, 4) / 4f) * MathF.Pow(2, rng.Next(-12, 3));
                    if (sf == ScaleFormat.F32) BitConverter.TryWriteBytes(scales.AsSpan(4 * i), few);
                    else BitConverter.TryWriteBytes(scales.AsSpan(2 * i), Ref.ToBf16(few));
                }
            // A zero reused scale in the second row of blocks: that row takes the two-pass path (the others the one-pass guess).
            if (sf != ScaleFormat.E8M0 && gr > 1) Array.Clear(scales, gc * H.ScaleBytes(sf), H.ScaleBytes(sf));
            foreach (FloatFormat inf in Enum.GetValues<FloatFormat>())
            {
                var w = new float[rows * cols];
                for (int i = 0; i < w.Length; i++)
                {
                    int blockIndex = i / cols / b0 * gc + i % cols / b1;
                    float s = H.Scale(scales, sf, blockIndex);
                    w[i] = EdgeWeight(rng, s);
                    // A BF16 weight gets one more draw when rounding to BF16 would move it (ties stay more often exact).
                    if (inf == FloatFormat.BF16 && Ref.Bf16ToF32(Ref.ToBf16(w[i])) != w[i]) w[i] = EdgeWeight(rng, s);
                    // Odd blocks stay within 448 s, so that Reuse keeps their scale (the others get new ones).
                    if (blockIndex % 2 == 1 && !(MathF.Abs(w[i]) <= 448 * MathF.Abs(s))) w[i] = s;
                }
                byte[] input = inf == FloatFormat.F32 ? H.Bytes(w) : H.Bytes(w.Select(Ref.ToBf16).ToArray());
                foreach (ScaleMode mode in Enum.GetValues<ScaleMode>())
                {
                    string what = $"BF16/F32 -> FP8 [{rows}, {cols}] block {b0}x{b1} {inf} input, {sf} scales, {mode}";
                    var (a, b) = BothPaths(() =>
                    {
                        var s2 = (byte[])scales.Clone();
                        var codes = new byte[rows * cols];
                        var rep = BlockQuant.Fp8(input, inf, rows, cols, s2, sf, block, mode, codes, new KernelOptions { MaxThreads = threads });
                        return (codes, s2, string.Join(";", rep.ChangedBlocks));
                    });
                    AssertSameBytes(a.codes, b.codes, what + " codes");
                    AssertSameBytes(a.s2, b.s2, what + " scales");
                    Assert.That(b.Item3, Is.EqualTo(a.Item3), what + " replaced blocks");
                    if (mode == ScaleMode.Reuse)
                    {
                        int replaced = b.Item3.Length == 0 ? 0 : b.Item3.Split(';').Length;
                        Assert.That(replaced, Is.InRange(1, gr * gc - 1), what + ": some blocks keep their scale and some do not");
                    }
                }
            }
        }
    }

    [TestCase(FloatFormat.BF16)]
    [TestCase(FloatFormat.F32)]
    public void Fp8QuantRefusesANonFiniteWeightOnBothPaths(FloatFormat inf)
    {
        int rows = 64, cols = 96;
        var w = new float[rows * cols];
        for (int i = 0; i < w.Length; i++) w[i] = i * 0.01f;
        w[33 * cols + 50] = float.PositiveInfinity;
        byte[] input = inf == FloatFormat.F32 ? H.Bytes(w) : H.Bytes(w.Select(Ref.ToBf16).ToArray());
        var (a, b) = BothPaths(() =>
        {
            var scales = new byte[(rows / 32) * (cols / 32) * 4];
            var ex = Assert.Throws<InvalidDataException>(() =>
                BlockQuant.Fp8(input, inf, rows, cols, scales, ScaleFormat.F32, new BlockSize(32, 32), ScaleMode.Canonical, new byte[rows * cols], new KernelOptions { MaxThreads = 1 }));
            return ex!.Message;
        });
        Assert.That(b, Is.EqualTo(a));
        Assert.That(b, Does.Contain("block [1, 1]"));
    }

    [TestCase(64, 4096, 32, 128)]
    [TestCase(40, 480, 16, 32)]
    [TestCase(33, 96, 8, 16)]
    public void ExactFp8Matches(int rows, int cols, int b0, int b1)
    {
        var block = new BlockSize(b0, b1);
        var (gr, gc) = block.GridFor(rows, cols);
        var rng = new Random(cols + b1);
        var codes = new byte[rows * cols];
        rng.NextBytes(codes);
        for (int i = 0; i < codes.Length; i++) if ((codes[i] & 0x7F) == 0x7F) codes[i] ^= 1;
        var scales = Enumerable.Range(0, gr * gc).Select(_ => (byte)rng.Next(ExactEncode.Fp8ScaleMin, ExactEncode.Fp8ScaleMax + 1)).ToArray();
        var bf16 = new byte[rows * cols * 2];
        BlockDequant.Fp8(codes, rows, cols, scales, ScaleFormat.E8M0, block, bf16, FloatFormat.BF16);
        var (a, b) = BothPaths(() => { var o = new byte[codes.Length]; return (ExactEncode.Fp8(bf16, rows, cols, scales, block, o), o); });
        Assert.That((a.Item1, b.Item1), Is.EqualTo((true, true)));
        AssertSameBytes(codes, b.o, "exact FP8 codes (Vector512)");
        AssertSameBytes(codes, a.o, "exact FP8 codes (Vector256)");
        // One value that no code times its scale gives (a low mantissa bit set): both paths say no.
        foreach (int at in new[] { 0, rows * cols - 1, rng.Next(rows * cols) })
        {
            var bad = (byte[])bf16.Clone();
            bad[2 * at] |= 1;
            if (BitConverter.ToUInt16(bad, 2 * at) == BitConverter.ToUInt16(bf16, 2 * at)) continue;
            var (x, y) = BothPaths(() => ExactEncode.Fp8(bad, rows, cols, scales, block, new byte[codes.Length]));
            Assert.That((x, y), Is.EqualTo((false, false)), $"value {at} changed");
        }
    }

    [TestCase(37, 128, 32)]
    [TestCase(16, 512, 64)]
    [TestCase(8, 96, 96)]
    public void ExactFp4Matches(int rows, int cols, int groupSize)
    {
        int groups = cols / groupSize;
        var rng = new Random(cols * 3 + groupSize);
        var packed = new byte[rows * cols / 2];
        rng.NextBytes(packed);
        var scales = Enumerable.Range(0, rows * groups).Select(_ => (byte)rng.Next(ExactEncode.Fp4ScaleMin, ExactEncode.Fp4ScaleMax + 1)).ToArray();
        var bf16 = new byte[rows * cols * 2];
        BlockDequant.Fp4(packed, rows, cols, scales, groupSize, bf16, FloatFormat.BF16);
        var (a, b) = BothPaths(() => { var o = new byte[packed.Length]; return (ExactEncode.Fp4(bf16, rows, cols, scales, groupSize, o), o); });
        Assert.That((a.Item1, b.Item1), Is.EqualTo((true, true)));
        AssertSameBytes(a.o, b.o, "exact FP4 codes");
        AssertSameBytes(packed, b.o, "exact FP4 codes against the source");
        var bad = (byte[])bf16.Clone();
        int at = rng.Next(rows * cols);
        bad[2 * at] ^= 0x20;   // a mantissa bit below E2M1 precision
        var (x, y) = BothPaths(() => ExactEncode.Fp4(bad, rows, cols, scales, groupSize, new byte[packed.Length]));
        Assert.That((x, y), Is.EqualTo((false, false)));
    }

    [Test]
    public void SwitchSelectsThePath()
    {
        if (!VectorWidth.Available512) Assert.Ignore("this CPU/runtime lacks AVX-512 F/BW/VBMI");
        bool saved = VectorWidth.Use512;
        try
        {
            VectorWidth.Use512 = false;
            Assert.That(VectorWidth.Use512, Is.False);
            VectorWidth.Use512 = true;
            Assert.That(VectorWidth.Use512, Is.True);
        }
        finally { VectorWidth.Use512 = saved; }
    }
}
