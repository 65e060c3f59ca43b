namespace Mtp.Quant.Tests;

/// <summary>
/// <see cref="BlockSize.RowChunk"/> through <see cref="RowChunkedBlocks"/>: a weight whose scale grid restarts every
/// chunk of rows (MiMo-V2-Flash's full-attention k_proj: 128x128 blocks per 192-row KV head).
/// </summary>
public class RowChunkedBlockTests
{
    static readonly BlockSize PerHead = new BlockSize(128, 128) with { RowChunk = 192 };

    [Test]
    public void TheGridRestartsAtEveryChunk()
    {
        Assert.That(PerHead.GridFor(768, 4096), Is.EqualTo((8, 32)));           // the release's [768, 4096] / [8, 32]
        Assert.That(PerHead.Unchunked.GridFor(768, 4096), Is.EqualTo((6, 32))); // what uniform blocks give
        Assert.That(PerHead.GridFor(384, 32), Is.EqualTo((4, 1)));
        Assert.That((new BlockSize(128, 128) with { RowChunk = 64 }).GridFor(256, 10), Is.EqualTo((4, 1)));
        Assert.That((new BlockSize(128, 128) with { RowChunk = 256 }).GridFor(512, 10), Is.EqualTo((4, 1))); // chunks of whole blocks: the uniform grid
        Assert.That(PerHead.ToString(), Is.EqualTo("128x128 per 192 rows"));
        Assert.That(PerHead.Unchunked, Is.EqualTo(BlockSize.Fp8Default));
        Assert.That(PerHead, Is.Not.EqualTo(BlockSize.Fp8Default));
    }

    static byte[] RandomCodes(Random rng, int n)
    {
        var codes = new byte[n];
        rng.NextBytes(codes);
        for (int i = 0; i < codes.Length; i++) if ((codes[i] & 0x7F) == 0x7F) codes[i] = 0; // no NaN codes
        return codes;
    }

    [TestCase(ScaleFormat.F32, FloatFormat.BF16)]
    [TestCase(ScaleFormat.BF16, FloatFormat.F32)]
    [TestCase(ScaleFormat.E8M0, FloatFormat.BF16)]
    public void DequantizationReadsScaleRowOfTheRowsOwnHead(ScaleFormat sf, FloatFormat of)
    {
        const int heads = 3, rows = heads * 192, cols = 150;
        var rng = new Random(17);
        byte[] codes = RandomCodes(rng, rows * cols);
        byte[] scales = H.RandomScales(rng, heads * 2 * 2, sf);
        int ob = of == FloatFormat.F32 ? 4 : 2;
        var output = new byte[rows * cols * ob];
        RowChunkedBlocks.Dequantize(codes, rows, cols, scales, sf, PerHead, output, of);
        uint[] got = H.OutBits(output, of);
        for (int i = 0; i < rows; i++)
        for (int j = 0; j < cols; j++)
        {
            int scaleRow = i / 192 * 2 + i % 192 / 128; // rows 0-127 of head h: 2h, rows 128-191: 2h+1
            uint want = H.Out((float)Ref.E4M3(codes[i * cols + j]) * H.Scale(scales, sf, scaleRow * 2 + j / 128), of);
            if (got[i * cols + j] != want) Assert.Fail($"[{i},{j}]: got 0x{got[i * cols + j]:X}, want 0x{want:X}");
        }

        // The same as each head dequantized alone with plain blocks.
        int sb = H.ScaleBytes(sf);
        for (int h = 0; h < heads; h++)
        {
            var alone = new byte[192 * cols * ob];
            BlockDequant.Fp8(codes.AsSpan(h * 192 * cols, 192 * cols), 192, cols, scales.AsSpan(h * 4 * sb, 4 * sb), sf, BlockSize.Fp8Default, alone, of);
            Assert.That(output.AsSpan(h * 192 * cols * ob, alone.Length).SequenceEqual(alone), $"head {h}");
        }
    }

    [Test]
    public void QuantizeThenDequantizeRoundTripsAndEachHeadGetsItsOwnScales()
    {
        const int heads = 2, rows = heads * 192, cols = 64;
        var rng = new Random(5);
        var w = new float[rows * cols];
        for (int i = 0; i < w.Length; i++) w[i] = (float)((rng.NextDouble() - 0.5) * Math.Pow(2, -(i / cols % 192) / 40.0) * (1 + i / cols / 192));
        var input = H.Bytes(w);
        var scales = new byte[heads * 2 * 4];
        var codes = new byte[rows * cols];
        var report = RowChunkedBlocks.Quantize(input, FloatFormat.F32, rows, cols, scales, ScaleFormat.F32, PerHead, ScaleMode.Canonical, codes);
        Assert.That(report.ChangedBlocks, Is.Empty);
        for (int h = 0; h < heads; h++)
            foreach (var (r0, n, k) in new[] { (0, 128, 0), (128, 64, 1) })
            {
                float amax = 0;
                for (int i = h * 192 + r0; i < h * 192 + r0 + n; i++)
                for (int j = 0; j < cols; j++) amax = MathF.Max(amax, MathF.Abs(w[i * cols + j]));
                Assert.That(H.Scale(scales, ScaleFormat.F32, h * 2 + k), Is.EqualTo(amax / 448f), $"head {h} scale row {k}");
            }

        // Dequantized to BF16 and quantized again with those scales: the same codes, no scale replaced, and the
        // equality check agrees.
        var bf16 = new byte[rows * cols * 2];
        RowChunkedBlocks.Dequantize(codes, rows, cols, scales, ScaleFormat.F32, PerHead, bf16, FloatFormat.BF16);
        var again = new byte[codes.Length];
        var reused = (byte[])scales.Clone();
        report = RowChunkedBlocks.Quantize(bf16, FloatFormat.BF16, rows, cols, reused, ScaleFormat.F32, PerHead, ScaleMode.Reuse, again);
        Assert.That(again, Is.EqualTo(codes));
        Assert.That(reused, Is.EqualTo(scales));
        Assert.That(report.ChangedBlocks, Is.Empty);
        Assert.That(RowChunkedBlocks.DequantizesTo(codes, rows, cols, scales, ScaleFormat.F32, PerHead, bf16, FloatFormat.BF16), Is.True);
        bf16[rows * cols * 2 - 1] ^= 0x40;
        Assert.That(RowChunkedBlocks.DequantizesTo(codes, rows, cols, scales, ScaleFormat.F32, PerHead, bf16, FloatFormat.BF16), Is.False);
    }

    [Test]
    public void AnOverflowingBlockIsReportedInTheWholeGrid()
    {
        const int rows = 2 * 192, cols = 16;
        var w = new float[rows * cols];
        for (int i = 0; i < w.Length; i++) w[i] = 1f;
        var scales = new byte[4 * 4];
        for (int s = 0; s < 4; s++) BitConverter.TryWriteBytes(scales.AsSpan(s * 4), 1f / 448f);
        w[(192 + 130) * cols] = 10f; // head 1, its second block row: scale row 3
        var codes = new byte[rows * cols];
        var report = RowChunkedBlocks.Quantize(H.Bytes(w), FloatFormat.F32, rows, cols, scales, ScaleFormat.F32, PerHead, ScaleMode.Reuse, codes);
        Assert.That(report.ChangedBlocks, Is.EqualTo(new[] { (3, 0) }));
    }

    [Test]
    public void ExactEncodingWithE8M0ScalesGivesTheCodesBack()
    {
        const int rows = 2 * 192, cols = 64;
        var rng = new Random(3);
        byte[] codes = RandomCodes(rng, rows * cols);
        byte[] scales = H.RandomScales(rng, 2 * 2, ScaleFormat.E8M0, -10, 2);
        var bf16 = new byte[rows * cols * 2];
        RowChunkedBlocks.Dequantize(codes, rows, cols, scales, ScaleFormat.E8M0, PerHead, bf16, FloatFormat.BF16);
        var back = new byte[codes.Length];
        Assert.That(RowChunkedBlocks.ExactEncodeFp8(bf16, rows, cols, scales, PerHead, back), Is.True);
        var deq = new byte[bf16.Length];
        RowChunkedBlocks.Dequantize(back, rows, cols, scales, ScaleFormat.E8M0, PerHead, deq, FloatFormat.BF16);
        Assert.That(deq, Is.EqualTo(bf16));
    }

    [Test]
    public void RowsThatAreNotWholeChunksAndChunkedBlocksGivenToThePlainKernelsAreRefused()
    {
        const int rows = 300, cols = 8;
        var codes = new byte[rows * cols];
        var scales = new byte[PerHead.GridFor(rows, cols).Rows * 4];
        var output = new byte[rows * cols * 4];
        var e = Assert.Throws<ArgumentException>(() => RowChunkedBlocks.Dequantize(codes, rows, cols, scales, ScaleFormat.F32, PerHead, output, FloatFormat.F32))!;
        Assert.That(e.Message, Does.Contain("[300, 8]").And.Contain("192-row chunks"));
        Assert.Throws<ArgumentException>(() => RowChunkedBlocks.Quantize(output, FloatFormat.F32, rows, cols, scales, ScaleFormat.F32, PerHead, ScaleMode.Canonical, codes));
        // A grid of the uniform shape does not fit a chunked block.
        e = Assert.Throws<ArgumentException>(() => RowChunkedBlocks.Dequantize(new byte[384 * 8], 384, 8, new byte[3 * 4], ScaleFormat.F32, PerHead, new byte[384 * 8 * 4], FloatFormat.F32))!;
        Assert.That(e.Message, Does.Contain("expected [4, 1]"));
        // The kernels index one grid from row 0, so they refuse a chunked block instead of misreading it.
        e = Assert.Throws<ArgumentException>(() => BlockDequant.Fp8(new byte[384 * 8], 384, 8, new byte[4 * 4], ScaleFormat.F32, PerHead, new byte[384 * 8 * 4], FloatFormat.F32))!;
        Assert.That(e.Message, Does.Contain("row-chunked"));
        Assert.Throws<ArgumentException>(() => BlockQuant.Fp8(new byte[384 * 8 * 4], FloatFormat.F32, 384, 8, new byte[4 * 4], ScaleFormat.F32, PerHead, ScaleMode.Canonical, new byte[384 * 8]));
        var scales16 = new byte[4];
        scales16.AsSpan().Fill(127); // E8M0 1.0
        e = Assert.Throws<ArgumentException>(() => ExactEncode.Fp8(new byte[384 * 16 * 2], 384, 16, scales16, PerHead, new byte[384 * 16]))!;
        Assert.That(e.Message, Does.Contain("RowChunkedBlocks"));
        Assert.Throws<ArgumentException>(() => ExactEncode.Fp8Verified(new byte[384 * 16 * 2], 384, 16, scales16, PerHead, new byte[384 * 16]));
        Assert.That(RowChunkedBlocks.ExactEncodeFp8(new byte[384 * 16 * 2], 384, 16, scales16, PerHead, new byte[384 * 16]), Is.True, "zeros encode exactly");
    }
}
