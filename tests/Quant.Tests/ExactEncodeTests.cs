namespace Mtp.Quant.Tests;

/// <summary>
/// <see cref="ExactEncode"/> must give back exactly the codes a weight was dequantized from (every E4M3 / E2M1 code,
/// subnormals and signed zeros included, at scales across its accepted range) and refuse anything else.
/// </summary>
public class ExactEncodeTests
{
    static byte[] E8M0Scales(Random rng, int n, int min, int max) => Enumerable.Range(0, n).Select(_ => (byte)rng.Next(min, max + 1)).ToArray();

    [Test]
    public void Fp8GivesBackEveryCodeAtEveryScaleInRange()
    {
        // 64 rows x 4096 columns of 32x128 blocks: every finite code (254 of them) in every 128-column block row.
        const int rows = 64, cols = 4096;
        var block = new BlockSize(32, 128);
        var rng = new Random(3);
        var finite = Enumerable.Range(0, 256).Where(c => (c & 0x7F) != 0x7F).Select(c => (byte)c).ToArray();
        var codes = new byte[rows * cols];
        for (int i = 0; i < codes.Length; i++) codes[i] = finite[(i + i / cols * 7) % finite.Length];
        var (gr, gc) = block.GridFor(rows, cols);
        var scales = E8M0Scales(rng, gr * gc, ExactEncode.Fp8ScaleMin, ExactEncode.Fp8ScaleMax);
        scales[0] = ExactEncode.Fp8ScaleMin;
        scales[1] = ExactEncode.Fp8ScaleMax;
        var bf16 = new byte[rows * cols * 2];
        BlockDequant.Fp8(codes, rows, cols, scales, ScaleFormat.E8M0, block, bf16, FloatFormat.BF16);

        var back = new byte[codes.Length];
        Assert.That(ExactEncode.Fp8(bf16, rows, cols, scales, block, back), Is.True);
        Assert.That(back, Is.EqualTo(codes));

        // The independent decoder agrees that these are the values: spot-check against Ref.E4M3 * 2^(s-127).
        for (int i = 0; i < codes.Length; i += 997)
        {
            int r = i / cols, c = i % cols;
            double want = Ref.E4M3(codes[i]) * Ref.E8M0(scales[r / block.Rows * gc + c / block.Cols]);
            Assert.That(Ref.Bf16ToF32(BitConverter.ToUInt16(bf16, i * 2)), Is.EqualTo((float)want), $"element {i}");
        }
    }

    [Test]
    public void Fp4GivesBackEveryCodeAtEveryScaleInRange()
    {
        const int rows = 40, cols = 256;
        var rng = new Random(4);
        var packed = new byte[rows * cols / 2];
        rng.NextBytes(packed);
        var scales = E8M0Scales(rng, rows * cols / 32, ExactEncode.Fp4ScaleMin, ExactEncode.Fp4ScaleMax);
        scales[0] = ExactEncode.Fp4ScaleMin;
        scales[1] = ExactEncode.Fp4ScaleMax;
        var bf16 = new byte[rows * cols * 2];
        BlockDequant.Fp4(packed, rows, cols, scales, 32, bf16, FloatFormat.BF16);

        var back = new byte[packed.Length];
        Assert.That(ExactEncode.Fp4(bf16, rows, cols, scales, 32, back), Is.True);
        Assert.That(back, Is.EqualTo(packed));
        // Every nibble value was exercised.
        Assert.That(packed.SelectMany(b => new[] { b & 15, b >> 4 }).Distinct().Count(), Is.EqualTo(16));
    }

    [Test]
    public void ValuesWithoutAnExactCodeAreRefused()
    {
        const int rows = 2, cols = 128;
        var block = new BlockSize(128, 128);
        var scales8 = new byte[] { 127 };
        var scales4 = Enumerable.Repeat((byte)127, rows * cols / 32).ToArray();
        foreach (float v in new[] { 1.0625f, 0.75f * 1.01f, 1e-30f, 500f, float.NaN, float.PositiveInfinity })
        {
            var bf16 = new byte[rows * cols * 2];
            BitConverter.TryWriteBytes(bf16.AsSpan(2 * 77), Ref.ToBf16(v));
            Assert.That(ExactEncode.Fp8(bf16, rows, cols, scales8, block, new byte[rows * cols]), Is.False, $"FP8 {v}");
            Assert.That(ExactEncode.Fp4(bf16, rows, cols, scales4, 32, new byte[rows * cols / 2]), Is.False, $"FP4 {v}");
        }
        // 0.75 is an E4M3 value but not an E2M1 one (E2M1 has 0.5 and 1 only there).
        var b = new byte[rows * cols * 2];
        BitConverter.TryWriteBytes(b.AsSpan(0), Ref.ToBf16(0.75f));
        Assert.That(ExactEncode.Fp8(b, rows, cols, scales8, block, new byte[rows * cols]), Is.True);
        Assert.That(ExactEncode.Fp4(b, rows, cols, scales4, 32, new byte[rows * cols / 2]), Is.False);
    }

    [Test]
    public void ScalesOutsideTheInjectiveRangeAreRefused()
    {
        var zeros = new byte[2 * 128 * 2];
        Assert.That(ExactEncode.Fp8(zeros, 2, 128, new byte[] { ExactEncode.Fp8ScaleMin - 1 }, new BlockSize(128, 128), new byte[256]), Is.False);
        Assert.That(ExactEncode.Fp8(zeros, 2, 128, new byte[] { ExactEncode.Fp8ScaleMax + 1 }, new BlockSize(128, 128), new byte[256]), Is.False);
        Assert.That(ExactEncode.Fp4(zeros, 2, 128, Enumerable.Repeat((byte)(ExactEncode.Fp4ScaleMax + 1), 8).ToArray(), 32, new byte[128]), Is.False);
        Assert.That(ExactEncode.Fp8(zeros, 2, 128, new byte[] { 127 }, new BlockSize(128, 128), new byte[256]), Is.True, "zeros encode at a normal scale");
    }

    [Test]
    public void WrongShapesThrowArgumentException()
    {
        Assert.Throws<ArgumentException>(() => ExactEncode.Fp4(new byte[64], 1, 32, new byte[1], 16, new byte[16]), "group not a multiple of 32");
        Assert.Throws<ArgumentException>(() => ExactEncode.Fp4(new byte[62], 1, 32, new byte[1], 32, new byte[16]));
        Assert.Throws<ArgumentException>(() => ExactEncode.Fp8(new byte[64], 1, 32, new byte[1], new BlockSize(128, 100), new byte[32]), "block columns");
        Assert.Throws<ArgumentException>(() => ExactEncode.Fp8(new byte[64], 1, 32, new byte[2], new BlockSize(128, 128), new byte[32]));
    }
}
