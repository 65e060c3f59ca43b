namespace Mtp.Quant.Tests;

public class DequantTests
{
    static readonly KernelOptions Single = new() { MaxThreads = 1 };
    static readonly KernelOptions AllowNaN = new() { AllowNonFiniteScales = true };

    [TestCase(300, 200, 128, 128)]
    [TestCase(256, 256, 128, 128)]
    [TestCase(1, 1, 128, 128)]
    [TestCase(70, 95, 32, 32)]
    [TestCase(33, 517, 16, 64)]
    public void Fp8_MatchesScalarReference(int rows, int cols, int b0, int b1)
    {
        var block = new BlockSize(b0, b1);
        var rng = new Random(rows * 31 + cols);
        var codes = new byte[rows * cols];
        rng.NextBytes(codes);
        for (int i = 0; i < Math.Min(256, codes.Length); i++) codes[i] = (byte)i;   // every code incl. NaN
        var (gr, gc) = block.GridFor(rows, cols);
        foreach (ScaleFormat sf in Enum.GetValues<ScaleFormat>())
        {
            byte[] scales = H.RandomScales(rng, gr * gc, sf, -30, 20);
            foreach (FloatFormat of in Enum.GetValues<FloatFormat>())
            {
                var output = new byte[rows * cols * (of == FloatFormat.F32 ? 4 : 2)];
                BlockDequant.Fp8(codes, rows, cols, scales, sf, block, output, of);
                uint[] got = H.OutBits(output, of);
                for (int i = 0; i < rows; i++)
                for (int j = 0; j < cols; j++)
                {
                    float s = H.Scale(scales, sf, (i / b0) * gc + j / b1);
                    int code = codes[i * cols + j];
                    // PyTorch decodes the NaN codes to 0x7FF00000 / 0xFFF00000; x86 multiplication keeps that NaN.
                    float x = (code & 0x7F) == 0x7F ? BitConverter.UInt32BitsToSingle(0x7FF00000u | ((uint)(code & 0x80) << 24)) : (float)Ref.E4M3(code);
                    uint want = H.Out(x * s, of);
                    if (got[i * cols + j] != want)
                        Assert.Fail($"{sf}->{of} [{i},{j}] code 0x{codes[i * cols + j]:X2} scale {s:R}: got 0x{got[i * cols + j]:X}, want 0x{want:X}");
                }
                var single = new byte[output.Length];
                BlockDequant.Fp8(codes, rows, cols, scales, sf, block, single, of, Single);
                Assert.That(single, Is.EqualTo(output), "single-threaded equals multi-threaded");
            }
        }
    }

    [TestCase(300, 200, 32)]
    [TestCase(37, 64, 32)]
    [TestCase(5, 2, 32)]
    [TestCase(64, 4096, 32)]
    [TestCase(9, 30, 8)]
    public void Fp4_MatchesScalarReference(int rows, int cols, int group)
    {
        var rng = new Random(rows + cols * 7);
        var packed = new byte[rows * cols / 2];
        rng.NextBytes(packed);
        int groups = (cols + group - 1) / group;
        var scales = Enumerable.Range(0, rows * groups).Select(_ => (byte)rng.Next(0, 255)).ToArray();
        foreach (FloatFormat of in Enum.GetValues<FloatFormat>())
        {
            var output = new byte[rows * cols * (of == FloatFormat.F32 ? 4 : 2)];
            BlockDequant.Fp4(packed, rows, cols, scales, group, output, of);
            uint[] got = H.OutBits(output, of);
            for (int i = 0; i < rows; i++)
            for (int j = 0; j < cols; j++)
            {
                byte b = packed[i * (cols / 2) + j / 2];
                int nib = j % 2 == 0 ? b & 15 : b >> 4;
                float s = (float)Ref.E8M0(scales[i * groups + j / group]);
                uint want = H.Out((float)Ref.Fp4[nib] * s, of);
                if (got[i * cols + j] != want)
                    Assert.Fail($"{of} [{i},{j}] nibble {nib} scale {s:R}: got 0x{got[i * cols + j]:X}, want 0x{want:X}");
            }
            var single = new byte[output.Length];
            BlockDequant.Fp4(packed, rows, cols, scales, group, single, of, Single);
            Assert.That(single, Is.EqualTo(output), "single-threaded equals multi-threaded");
        }
    }

    [Test]
    public void Fp8_WrongGridNamesShapes()
    {
        var codes = new byte[300 * 200];
        var output = new byte[300 * 200 * 2];
        var ex = Assert.Throws<ArgumentException>(() =>
            BlockDequant.Fp8(codes, 300, 200, new byte[3 * 3 * 4], ScaleFormat.F32, BlockSize.Fp8Default, output, FloatFormat.BF16));
        Assert.That(ex!.Message, Does.Contain("[300, 200]").And.Contain("[3, 2]").And.Contain("128x128"));
        var ex2 = Assert.Throws<ArgumentException>(() => BlockDequant.ValidateScaleGrid(300, 200, 3, 3, BlockSize.Fp8Default));
        Assert.That(ex2!.Message, Does.Contain("[3, 3]").And.Contain("[300, 200]").And.Contain("[3, 2]"));
        Assert.DoesNotThrow(() => BlockDequant.ValidateScaleGrid(300, 200, 3, 2, BlockSize.Fp8Default));
        Assert.Throws<ArgumentException>(() =>
            BlockDequant.Fp8(codes, 300, 200, new byte[6 * 4], ScaleFormat.F32, BlockSize.Fp8Default, new byte[10], FloatFormat.BF16));
        Assert.Throws<ArgumentException>(() =>
            BlockDequant.Fp8(codes.AsSpan(1), 300, 200, new byte[6 * 4], ScaleFormat.F32, BlockSize.Fp8Default, output, FloatFormat.BF16));
    }

    [Test]
    public void Fp4_ShapeErrors()
    {
        Assert.Throws<ArgumentException>(() => BlockDequant.Fp4(new byte[10], 2, 11, new byte[2], 32, new byte[2 * 11 * 2], FloatFormat.BF16));
        var ex = Assert.Throws<ArgumentException>(() => BlockDequant.Fp4(new byte[128], 4, 64, new byte[4], 32, new byte[4 * 64 * 2], FloatFormat.BF16));
        Assert.That(ex!.Message, Does.Contain("[4, 64]").And.Contain("[4, 2]"));
    }

    [TestCase(ScaleFormat.F32)]
    [TestCase(ScaleFormat.BF16)]
    [TestCase(ScaleFormat.E8M0)]
    public void Fp8_NonFiniteScaleThrowsNamingBlock(ScaleFormat sf)
    {
        var rng = new Random(5);
        byte[] scales = H.RandomScales(rng, 6, sf);
        int bad = 1 * 2 + 1;   // block [1, 1] in a [3, 2] grid
        switch (sf)
        {
            case ScaleFormat.F32: BitConverter.GetBytes(float.NaN).CopyTo(scales, bad * 4); break;
            case ScaleFormat.BF16: BitConverter.GetBytes((ushort)0x7F80).CopyTo(scales, bad * 2); break;
            default: scales[bad] = 0xFF; break;
        }
        var codes = new byte[300 * 200];
        var output = new byte[300 * 200 * 2];
        var ex = Assert.Throws<InvalidDataException>(() =>
            BlockDequant.Fp8(codes, 300, 200, scales, sf, BlockSize.Fp8Default, output, FloatFormat.BF16));
        Assert.That(ex!.Message, Does.Contain("[1, 1]"));
        BlockDequant.Fp8(codes, 300, 200, scales, sf, BlockSize.Fp8Default, output, FloatFormat.BF16, AllowNaN);
        var o = H.As<ushort>(output);
        Assert.That(float.IsNaN(BFloat16.ToFloat(o[128 * 200 + 128])) || float.IsInfinity(BFloat16.ToFloat(o[128 * 200 + 128])) || o[128 * 200 + 128] == 0x7F80);
        Assert.That(o[0], Is.EqualTo((ushort)0));
    }

    [Test]
    public void Fp4_NaNScaleThrows()
    {
        var scales = new byte[4 * 2];
        Array.Fill(scales, (byte)127);
        scales[5] = 0xFF;
        var ex = Assert.Throws<InvalidDataException>(() => BlockDequant.Fp4(new byte[128], 4, 64, scales, 32, new byte[4 * 64 * 2], FloatFormat.BF16));
        Assert.That(ex!.Message, Does.Contain("[2, 1]"));
        Assert.DoesNotThrow(() => BlockDequant.Fp4(new byte[128], 4, 64, scales, 32, new byte[4 * 64 * 2], FloatFormat.BF16, AllowNaN));
    }
}
