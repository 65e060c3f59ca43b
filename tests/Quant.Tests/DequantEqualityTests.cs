namespace Mtp.Quant.Tests;

/// <summary>
/// <see cref="DequantEquality"/> answers "do these codes dequantize to exactly these floats" chunk by chunk: it must agree
/// with a whole-matrix <see cref="BlockDequant"/> and catch a one-bit difference in any chunk, including the partial last one.
/// </summary>
public class DequantEqualityTests
{
    // 2500 rows x 256 BF16 columns: 512-byte rows, so 1024-row chunks (a multiple of the 128-row block), the last one partial.
    const int Rows = 2500, Cols = 256;

    static (byte[] Codes, byte[] Scales, BlockSize Block) Fp8Case(ScaleFormat sf, int seed)
    {
        var rng = new Random(seed);
        var block = new BlockSize(128, 128);
        var (gr, gc) = block.GridFor(Rows, Cols);
        var codes = new byte[Rows * Cols];
        rng.NextBytes(codes);
        for (int i = 0; i < codes.Length; i++) if ((codes[i] & 0x7F) == 0x7F) codes[i] ^= 1; // no NaN codes
        return (codes, H.RandomScales(rng, gr * gc, sf), block);
    }

    [TestCase(ScaleFormat.F32, FloatFormat.BF16)]
    [TestCase(ScaleFormat.E8M0, FloatFormat.BF16)]
    [TestCase(ScaleFormat.BF16, FloatFormat.F32)]
    public void Fp8AgreesWithWholeMatrixDequantAndCatchesOneBitAnywhere(ScaleFormat sf, FloatFormat of)
    {
        var (codes, scales, block) = Fp8Case(sf, 5);
        var full = new byte[Rows * Cols * BlockDequant.BytesPerElement(of)];
        BlockDequant.Fp8(codes, Rows, Cols, scales, sf, block, full, of);
        Assert.That(DequantEquality.Fp8(codes, Rows, Cols, scales, sf, block, full, of), Is.True);
        foreach (int at in new[] { 0, full.Length / 2 + 3, full.Length - 1 })
        {
            full[at] ^= 1;
            Assert.That(DequantEquality.Fp8(codes, Rows, Cols, scales, sf, block, full, of), Is.False, $"flipped byte {at}");
            full[at] ^= 1;
        }
    }

    [TestCase(128, FloatFormat.BF16)]
    [TestCase(96, FloatFormat.F32)]
    [TestCase(127, FloatFormat.BF16)]
    public void Fp8WideRowsChunkInsideARowBlock(int blockRows, FloatFormat of)
    {
        // 300 x 4096: one row-block of 96-128 rows is 0.75-2 MB of output, more than a chunk, so chunks are a divisor of
        // the block height (64 or 48 rows; 1 for the prime 127) and must still use their own row-block's scales.
        const int rows = 300, cols = 4096;
        var rng = new Random(blockRows);
        var block = new BlockSize(blockRows, 128);
        var (gr, gc) = block.GridFor(rows, cols);
        var codes = new byte[rows * cols];
        rng.NextBytes(codes);
        for (int i = 0; i < codes.Length; i++) if ((codes[i] & 0x7F) == 0x7F) codes[i] ^= 1;
        var scales = H.RandomScales(rng, gr * gc, ScaleFormat.F32);
        var full = new byte[rows * cols * BlockDequant.BytesPerElement(of)];
        BlockDequant.Fp8(codes, rows, cols, scales, ScaleFormat.F32, block, full, of);
        Assert.That(DequantEquality.Fp8(codes, rows, cols, scales, ScaleFormat.F32, block, full, of), Is.True);
        int rowBytes = cols * BlockDequant.BytesPerElement(of);
        foreach (int row in new[] { blockRows - 1, blockRows + 70, rows - 1 })
        {
            int at = row * rowBytes + 5;
            full[at] ^= 1;
            Assert.That(DequantEquality.Fp8(codes, rows, cols, scales, ScaleFormat.F32, block, full, of), Is.False, $"flipped a byte of row {row}");
            full[at] ^= 1;
        }
        // A scale of the second row-block changed: only chunks that read it can notice.
        var other = (byte[])scales.Clone();
        BitConverter.TryWriteBytes(other.AsSpan(gc * 4 + 8), BitConverter.ToSingle(other, gc * 4 + 8) * 2);
        Assert.That(DequantEquality.Fp8(codes, rows, cols, other, ScaleFormat.F32, block, full, of), Is.False);
    }

    [Test]
    public void Fp4AgreesWithWholeMatrixDequantAndCatchesOneBitAnywhere()
    {
        var rng = new Random(9);
        var packed = new byte[Rows * Cols / 2];
        rng.NextBytes(packed);
        var scales = H.RandomScales(rng, Rows * Cols / 32, ScaleFormat.E8M0);
        var full = new byte[Rows * Cols * 2];
        BlockDequant.Fp4(packed, Rows, Cols, scales, 32, full, FloatFormat.BF16);
        Assert.That(DequantEquality.Fp4(packed, Rows, Cols, scales, 32, full, FloatFormat.BF16), Is.True);
        foreach (int at in new[] { 1, 1024 * 512 + 17, full.Length - 2 })
        {
            full[at] ^= 0x80;
            Assert.That(DequantEquality.Fp4(packed, Rows, Cols, scales, 32, full, FloatFormat.BF16), Is.False, $"flipped byte {at}");
            full[at] ^= 0x80;
        }
    }

    [Test]
    public void NonFiniteScalesCompareInsteadOfThrowing()
    {
        var packed = new byte[4 * 64 / 2];
        var scales = Enumerable.Repeat((byte)127, 4 * 2).ToArray();
        scales[3] = E8M0.NaN;
        var full = new byte[4 * 64 * 2];
        BlockDequant.Fp4(packed, 4, 64, scales, 32, full, FloatFormat.BF16, new KernelOptions { AllowNonFiniteScales = true });
        Assert.That(DequantEquality.Fp4(packed, 4, 64, scales, 32, full, FloatFormat.BF16), Is.True, "NaN bit patterns are compared as bits");
        Assert.That(DequantEquality.Fp4(packed, 4, 64, scales, 32, new byte[full.Length], FloatFormat.BF16), Is.False);
    }

    [Test]
    public void WrongShapesThrowArgumentException()
    {
        var (codes, scales, block) = Fp8Case(ScaleFormat.F32, 1);
        var full = new byte[Rows * Cols * 2];
        Assert.Throws<ArgumentException>(() => DequantEquality.Fp8(codes.AsSpan(1), Rows, Cols, scales, ScaleFormat.F32, block, full, FloatFormat.BF16));
        Assert.Throws<ArgumentException>(() => DequantEquality.Fp8(codes, Rows, Cols, scales.AsSpan(4), ScaleFormat.F32, block, full, FloatFormat.BF16));
        Assert.Throws<ArgumentException>(() => DequantEquality.Fp8(codes, Rows, Cols, scales, ScaleFormat.F32, block, full.AsSpan(2), FloatFormat.BF16));
        Assert.Throws<ArgumentException>(() => DequantEquality.Fp4(new byte[10], 2, 9, new byte[2], 32, new byte[36], FloatFormat.BF16), "odd column count");
        Assert.Throws<ArgumentException>(() => DequantEquality.Fp4(new byte[16], 2, 16, new byte[2], 32, new byte[60], FloatFormat.BF16), "output size");
    }
}
