namespace Mtp.Quant.Tests;

/// <summary>
/// <see cref="BlockSize.PerRow"/>, compressed-tensors' per-channel FP8: one scale per row, however wide the row, through
/// the same kernels as square blocks.
/// </summary>
public class PerRowBlockTests
{
    [TestCase(1, 1)]
    [TestCase(5, 100)]
    [TestCase(7168, 18432)]
    [TestCase(3, 1 << 30)] // the widest row PerRow covers; no checkpoint has rows of a billion elements
    public void TheGridIsOneColumnPerRow(int rows, int cols)
    {
        Assert.That(BlockSize.PerRow.GridFor(rows, cols), Is.EqualTo((rows, 1)));
        Assert.That(BlockSize.PerRow.IsPerRow, Is.True);
        Assert.That(new BlockSize(128, 128).IsPerRow, Is.False);
        Assert.That(BlockSize.PerRow.ToString(), Is.EqualTo("per-row"));
        Assert.That(new BlockSize(128, 64).ToString(), Is.EqualTo("128x64"));
    }

    [TestCase(9, 40)]
    [TestCase(33, 300)] // wide enough for the vector paths
    public void DequantizationMultipliesEachRowByItsScale(int rows, int cols)
    {
        var rng = new Random(rows + cols);
        var codes = new byte[rows * cols];
        rng.NextBytes(codes);
        for (int i = 0; i < codes.Length; i++) if ((codes[i] & 0x7F) == 0x7F) codes[i] = 0; // no NaN codes here
        foreach (ScaleFormat sf in new[] { ScaleFormat.BF16, ScaleFormat.F32 })
        {
            byte[] scales = H.RandomScales(rng, rows, sf);
            foreach (FloatFormat of in Enum.GetValues<FloatFormat>())
            {
                var output = new byte[rows * cols * (of == FloatFormat.F32 ? 4 : 2)];
                BlockDequant.Fp8(codes, rows, cols, scales, sf, BlockSize.PerRow, output, of);
                uint[] got = H.OutBits(output, of);
                for (int i = 0; i < rows; i++)
                for (int j = 0; j < cols; j++)
                {
                    uint want = H.Out((float)Ref.E4M3(codes[i * cols + j]) * H.Scale(scales, sf, i), of);
                    if (got[i * cols + j] != want) Assert.Fail($"{sf}->{of} [{i},{j}]: got 0x{got[i * cols + j]:X}, want 0x{want:X}");
                }
            }
        }
    }

    [Test]
    public void CanonicalScalesAreEachRowsMaximumOver448()
    {
        const int rows = 6, cols = 200;
        var rng = new Random(7);
        var w = new float[rows * cols];
        for (int i = 0; i < w.Length; i++) w[i] = (float)((rng.NextDouble() - 0.5) * Math.Pow(2, -(i / cols) * 3));
        var input = H.Bytes(w);
        var scales = new byte[rows * 4];
        var codes = new byte[rows * cols];
        BlockQuant.Fp8(input, FloatFormat.F32, rows, cols, scales, ScaleFormat.F32, BlockSize.PerRow, ScaleMode.Canonical, codes);
        for (int i = 0; i < rows; i++)
        {
            float amax = w.Skip(i * cols).Take(cols).Max(MathF.Abs);
            Assert.That(H.Scale(scales, ScaleFormat.F32, i), Is.EqualTo(amax / 448f), $"row {i}");
        }
        // Quantizing again with those scales changes nothing: the scales fit.
        var again = new byte[codes.Length];
        var report = BlockQuant.Fp8(input, FloatFormat.F32, rows, cols, scales, ScaleFormat.F32, BlockSize.PerRow, ScaleMode.Reuse, again);
        Assert.That(again, Is.EqualTo(codes));
        Assert.That(report.ChangedBlocks, Is.Empty);
    }
}
