namespace Mtp.Quant.Tests;

public class QuantTests
{
    static readonly KernelOptions Idem = new() { IdempotentPowerOfTwoScales = true };

    /// <summary>Codes covering every non-NaN E4M3 code in each block (plus random ones).</summary>
    static byte[] AllCodes(int rows, int cols, BlockSize block, Random rng)
    {
        var codes = new byte[rows * cols];
        for (int i = 0; i < rows; i++)
        for (int j = 0; j < cols; j++)
        {
            int local = (i % block.Rows) * block.Cols + (j % block.Cols);
            int c = local < 254 ? local : rng.Next(254);
            codes[i * cols + j] = (byte)(c >= 127 ? c + 1 : c); // skip 0x7F; 254 codes: 0..126, 128..254
        }
        return codes;
    }

    static byte[] Dequant(byte[] codes, int rows, int cols, byte[] scales, ScaleFormat sf, BlockSize block, FloatFormat of)
    {
        var o = new byte[rows * cols * (of == FloatFormat.F32 ? 4 : 2)];
        BlockDequant.Fp8(codes, rows, cols, scales, sf, block, o, of);
        return o;
    }

    [TestCase(ScaleFormat.F32, FloatFormat.BF16, -117, 118)]
    [TestCase(ScaleFormat.F32, FloatFormat.BF16, -24, 4)]
    [TestCase(ScaleFormat.F32, FloatFormat.F32, -117, 118)]
    [TestCase(ScaleFormat.BF16, FloatFormat.BF16, -117, 118)]
    [TestCase(ScaleFormat.BF16, FloatFormat.F32, -30, 10)]
    [TestCase(ScaleFormat.E8M0, FloatFormat.BF16, -117, 118)]
    [TestCase(ScaleFormat.E8M0, FloatFormat.F32, -117, 118)]
    public void Fp8_RequantizeWithSourceScaleRecoversEveryCode(ScaleFormat sf, FloatFormat of, int lo, int hi)
    {
        var block = new BlockSize(32, 16);
        int rows = 300, cols = 200;
        var (gr, gc) = block.GridFor(rows, cols);
        for (int seed = 0; seed < 6; seed++)
        {
            var rng = new Random(seed);
            byte[] codes = AllCodes(rows, cols, block, rng);
            byte[] scales = H.RandomScales(rng, gr * gc, sf, lo, hi);
            if (sf == ScaleFormat.E8M0) { scales[0] = (byte)(lo + 127); scales[1] = (byte)(hi + 127); }
            byte[] w = Dequant(codes, rows, cols, scales, sf, block, of);
            byte[] s2 = (byte[])scales.Clone();
            var q = new byte[codes.Length];
            var rep = BlockQuant.Fp8(w, of, rows, cols, s2, sf, block, ScaleMode.Reuse, q);
            Assert.That(rep.ChangedBlocks, Is.Empty, $"seed {seed}");
            Assert.That(s2, Is.EqualTo(scales));
            for (int i = 0; i < q.Length; i++)
                if (q[i] != codes[i])
                    Assert.Fail($"seed {seed} [{i / cols},{i % cols}] code 0x{codes[i]:X2} -> 0x{q[i]:X2}, scale {H.Scale(scales, sf, (i / cols / block.Rows) * gc + (i % cols) / block.Cols):R}");
        }
    }

    [Test]
    public void Fp8_PromiseLimitBelowTinyPowerOfTwoScale()
    {
        // 2^-9 * 2^-127 = 2^-136 is below the smallest BF16 subnormal: the BF16 path cannot keep it (documented bound).
        var codes = new byte[] { 0x01 };
        var scales = new byte[] { 0 };
        var w = Dequant(codes, 1, 1, scales, ScaleFormat.E8M0, new BlockSize(1, 1), FloatFormat.BF16);
        var q = new byte[1];
        BlockQuant.Fp8(w, FloatFormat.BF16, 1, 1, scales, ScaleFormat.E8M0, new BlockSize(1, 1), ScaleMode.Reuse, q);
        Assert.That(q[0], Is.EqualTo(0));
    }

    [TestCase(ScaleFormat.F32, FloatFormat.BF16)]
    [TestCase(ScaleFormat.BF16, FloatFormat.F32)]
    [TestCase(ScaleFormat.E8M0, FloatFormat.BF16)]
    [TestCase(ScaleFormat.E8M0, FloatFormat.F32)]
    public void Fp8_CanonicalMatchesReferenceFormula(ScaleFormat sf, FloatFormat inf)
    {
        int rows = 200, cols = 300;
        var block = new BlockSize(64, 128);
        var (gr, gc) = block.GridFor(rows, cols);
        var rng = new Random(7);
        var wf = new float[rows * cols];
        for (int i = 0; i < wf.Length; i++)
        {
            int blk = (i / cols / 64) * gc + (i % cols) / 128;
            wf[i] = (float)((rng.NextDouble() * 2 - 1) * Math.Pow(2, blk * 3 - 20));
        }
        for (int j = 0; j < 128; j++) for (int i = 64; i < 128; i++) wf[i * cols + j] = 0f;   // all-zero block [1, 0]
        wf[64 * cols + 5] = -0f;
        byte[] input = inf == FloatFormat.F32 ? H.Bytes(wf) : H.Bytes(wf.Select(Ref.ToBf16).ToArray());
        float[] w = inf == FloatFormat.F32 ? wf : wf.Select(v => Ref.Bf16ToF32(Ref.ToBf16(v))).ToArray();
        var scales = new byte[gr * gc * H.ScaleBytes(sf)];
        var q = new byte[rows * cols];
        var rep = BlockQuant.Fp8(input, inf, rows, cols, scales, sf, block, ScaleMode.Canonical, q);
        Assert.That(rep.ChangedBlocks, Is.Empty);
        for (int br = 0; br < gr; br++)
        for (int bc = 0; bc < gc; bc++)
        {
            double amax = 0;
            for (int i = br * 64; i < Math.Min(rows, br * 64 + 64); i++)
                for (int j = bc * 128; j < Math.Min(cols, bc * 128 + 128); j++) amax = Math.Max(amax, Math.Abs(w[i * cols + j]));
            float s = H.Scale(scales, sf, br * gc + bc);
            float want = amax == 0 ? 1f : sf switch
            {
                ScaleFormat.F32 => (float)amax / 448f,
                ScaleFormat.BF16 => Ref.Bf16ToF32(Ref.ToBf16((float)amax / 448f)),
                _ => (float)Math.Pow(2, Math.Ceiling(Math.Log2(amax / 448.0))),
            };
            Assert.That(s, Is.EqualTo(want), $"scale of block [{br}, {bc}] (amax {amax:R})");
            for (int i = br * 64; i < Math.Min(rows, br * 64 + 64); i++)
                for (int j = bc * 128; j < Math.Min(cols, bc * 128 + 128); j++)
                {
                    byte r = Ref.ToE4M3(Math.Clamp(w[i * cols + j] / s, -448f, 448f));
                    if (q[i * cols + j] != r) Assert.Fail($"[{i},{j}] w {w[i * cols + j]:R} s {s:R}: 0x{q[i * cols + j]:X2} want 0x{r:X2}");
                }
        }
        Assert.That(q[64 * cols + 5], Is.EqualTo(0x80), "-0.0 keeps its sign");
        Assert.That(q[64 * cols + 6], Is.EqualTo(0x00));
        var single = new byte[q.Length];
        var s1 = new byte[scales.Length];
        BlockQuant.Fp8(input, inf, rows, cols, s1, sf, block, ScaleMode.Canonical, single, new KernelOptions { MaxThreads = 1 });
        Assert.That(single, Is.EqualTo(q));
        Assert.That(s1, Is.EqualTo(scales));
    }

    [TestCase(ScaleFormat.F32, 0x3F800000u)]
    [TestCase(ScaleFormat.BF16, 0x3F80u)]
    [TestCase(ScaleFormat.E8M0, 127u)]
    public void Fp8_AllZeroBlockCanonicalScaleIsOne(ScaleFormat sf, uint raw)
    {
        var input = new byte[4 * 4 * 2];
        var scales = new byte[H.ScaleBytes(sf)];
        Array.Fill(scales, (byte)0xAB);
        var q = new byte[16];
        Array.Fill(q, (byte)0x55);
        BlockQuant.Fp8(input, FloatFormat.BF16, 4, 4, scales, sf, new BlockSize(4, 4), ScaleMode.Canonical, q);
        uint got = sf switch { ScaleFormat.F32 => BitConverter.ToUInt32(scales), ScaleFormat.BF16 => BitConverter.ToUInt16(scales), _ => scales[0] };
        Assert.That(got, Is.EqualTo(raw));
        Assert.That(q, Is.All.EqualTo((byte)0));
        // Reuse with a zero scale on a zero block keeps the scale.
        var zs = new byte[H.ScaleBytes(sf)];
        if (sf == ScaleFormat.E8M0) zs[0] = 0;
        var rep = BlockQuant.Fp8(input, FloatFormat.BF16, 4, 4, zs, sf, new BlockSize(4, 4), ScaleMode.Reuse, q);
        Assert.That(rep.ChangedBlocks, Is.Empty);
        Assert.That(q, Is.All.EqualTo((byte)0));
    }

    [TestCase(ScaleFormat.F32)]
    [TestCase(ScaleFormat.E8M0)]
    public void Fp8_ReuseOverflowReplacesOnlyThatBlock(ScaleFormat sf)
    {
        int rows = 300, cols = 200;
        var block = BlockSize.Fp8Default;
        var (gr, gc) = block.GridFor(rows, cols);
        var rng = new Random(11);
        byte[] codes = AllCodes(rows, cols, block, rng);
        byte[] scales = H.RandomScales(rng, gr * gc, sf);
        float[] w = H.As<float>(Dequant(codes, rows, cols, scales, sf, block, FloatFormat.F32));
        // block [1, 1]: scale one value up so that it no longer fits
        int bi = 130 * cols + 150;
        float s11 = H.Scale(scales, sf, 1 * gc + 1);
        w[bi] = 500f * s11;
        byte[] s2 = (byte[])scales.Clone();
        var q = new byte[codes.Length];
        var rep = BlockQuant.Fp8(H.Bytes(w), FloatFormat.F32, rows, cols, s2, sf, block, ScaleMode.Reuse, q);
        Assert.That(rep.ChangedBlocks, Is.EqualTo(new[] { (1, 1) }));
        int sb = H.ScaleBytes(sf);
        for (int b = 0; b < gr * gc; b++)
            if (b != 1 * gc + 1) Assert.That(s2.AsSpan(b * sb, sb).ToArray(), Is.EqualTo(scales.AsSpan(b * sb, sb).ToArray()), $"scale {b}");
        float ns = H.Scale(s2, sf, 1 * gc + 1);
        double amax = 0;
        for (int i = 128; i < 256; i++) for (int j = 128; j < 200; j++) amax = Math.Max(amax, Math.Abs(w[i * cols + j]));
        float want = sf == ScaleFormat.F32 ? (float)amax / 448f : (float)Math.Pow(2, Math.Ceiling(Math.Log2(amax / 448.0)));
        Assert.That(ns, Is.EqualTo(want));
        for (int i = 0; i < rows; i++)
        for (int j = 0; j < cols; j++)
        {
            bool inBlock = i / 128 == 1 && j / 128 == 1;
            byte expect = inBlock ? Ref.ToE4M3(Math.Clamp(w[i * cols + j] / ns, -448f, 448f)) : codes[i * cols + j];
            if (q[i * cols + j] != expect) Assert.Fail($"[{i},{j}] 0x{q[i * cols + j]:X2} want 0x{expect:X2}");
        }
        // A value in (448 s, 464 s] rounds to 448 without replacing the scale.
        w[bi] = 460f * s11;
        s2 = (byte[])scales.Clone();
        rep = BlockQuant.Fp8(H.Bytes(w), FloatFormat.F32, rows, cols, s2, sf, block, ScaleMode.Reuse, q);
        Assert.That(rep.ChangedBlocks, Is.Empty);
        Assert.That(q[bi], Is.EqualTo(0x7E));
    }

    [Test]
    public void Fp8_NonFiniteInputsAndScales()
    {
        var input = H.Bytes(new float[] { 1, 2, float.NaN, 4 });
        var scales = H.Bytes(new[] { 1f });
        var q = new byte[4];
        Assert.Throws<InvalidDataException>(() => BlockQuant.Fp8(input, FloatFormat.F32, 2, 2, scales, ScaleFormat.F32, new BlockSize(2, 2), ScaleMode.Canonical, q));
        input = H.Bytes(new float[] { 1, 2, 3, 4 });
        scales = H.Bytes(new[] { float.NaN });
        var ex = Assert.Throws<InvalidDataException>(() => BlockQuant.Fp8(input, FloatFormat.F32, 2, 2, scales, ScaleFormat.F32, new BlockSize(2, 2), ScaleMode.Reuse, q));
        Assert.That(ex!.Message, Does.Contain("[0, 0]"));
        var rep = BlockQuant.Fp8(input, FloatFormat.F32, 2, 2, scales, ScaleFormat.F32, new BlockSize(2, 2), ScaleMode.Reuse, q, new KernelOptions { AllowNonFiniteScales = true });
        Assert.That(rep.ChangedBlocks, Is.EqualTo(new[] { (0, 0) }));
        Assert.That(BitConverter.ToSingle(scales), Is.EqualTo(4f / 448f));
        Assert.Throws<ArgumentException>(() => BlockQuant.Fp8(input, FloatFormat.F32, 2, 2, new byte[8], ScaleFormat.F32, new BlockSize(2, 2), ScaleMode.Reuse, q));
    }

    /// <summary>Canonical E8M0 quantization, then dequantization to BF16, then canonical again.</summary>
    static (byte[] q1, byte[] s1, byte[] q2, byte[] s2) CanonicalTwice(float[] wf, int rows, int cols, BlockSize block, KernelOptions opt)
    {
        var (gr, gc) = block.GridFor(rows, cols);
        var input = H.Bytes(wf.Select(Ref.ToBf16).ToArray());
        var s1 = new byte[gr * gc];
        var q1 = new byte[rows * cols];
        BlockQuant.Fp8(input, FloatFormat.BF16, rows, cols, s1, ScaleFormat.E8M0, block, ScaleMode.Canonical, q1, opt);
        var w2 = Dequant(q1, rows, cols, s1, ScaleFormat.E8M0, block, FloatFormat.BF16);
        var s2 = new byte[gr * gc];
        var q2 = new byte[rows * cols];
        BlockQuant.Fp8(w2, FloatFormat.BF16, rows, cols, s2, ScaleFormat.E8M0, block, ScaleMode.Canonical, q2, opt);
        return (q1, s1, q2, s2);
    }

    static float[] RandomWeights(int n, Random rng, int blockElems)
    {
        var wf = new float[n];
        double mag = 1;
        for (int i = 0; i < n; i++)
        {
            if (i % blockElems == 0) mag = Math.Pow(2, rng.NextDouble() * 40 - 30);
            wf[i] = (float)(rng.NextDouble() * 2 - 1) * (float)mag;
        }
        return wf;
    }

    [Test]
    public void Fp8_CanonicalE8M0_IdempotentWithRoundingBoundaryRule()
    {
        var block = new BlockSize(1, 16);
        var rng = new Random(3);
        for (int round = 0; round < 5; round++)
        {
            var wf = RandomWeights(64 * 256, rng, 16);
            // force blocks whose amax/2^k lands in (224, 232] and (448, 464]
            for (int b = 0; b < 64; b++) { wf[b * 16] = 230f * (1 << (b % 8)); wf[(b + 64) * 16] = 460f / (1 << (b % 8)); }
            var (q1, s1, q2, s2) = CanonicalTwice(wf, 64, 256, block, Idem);
            Assert.That(s2, Is.EqualTo(s1));
            Assert.That(q2, Is.EqualTo(q1));
        }
    }

    [Test]
    public void Fp8_CanonicalE8M0_PlainRuleIdempotentExceptHalfQmaxBlocks()
    {
        var block = new BlockSize(1, 16);
        var rng = new Random(4);
        var wf = RandomWeights(64 * 256, rng, 16);
        for (int b = 0; b < 64; b++) wf[b * 16] = 230f * (1 << (b % 8));
        var (q1, s1, q2, s2) = CanonicalTwice(wf, 64, 256, block, default);
        int differing = 0;
        for (int b = 0; b < s1.Length; b++)
        {
            int maxCode = Enumerable.Range(b * 16, 16).Max(i => q1[i] & 0x7F);
            bool halfQmax = maxCode == 0x76;  // 224
            if (halfQmax) { differing++; Assert.That(s2[b], Is.EqualTo(s1[b] - 1), $"block {b}"); }
            else
            {
                Assert.That(s2[b], Is.EqualTo(s1[b]), $"block {b}");
                Assert.That(q2.AsSpan(b * 16, 16).ToArray(), Is.EqualTo(q1.AsSpan(b * 16, 16).ToArray()), $"block {b}");
            }
        }
        Assert.That(differing, Is.GreaterThanOrEqualTo(64));
    }

    // ------------------------------------------------------------------ FP4

    [TestCase(FloatFormat.BF16)]
    [TestCase(FloatFormat.F32)]
    public void Fp4_RequantizeWithSourceScaleRecoversEveryCode(FloatFormat of)
    {
        int rows = 40, cols = 200, group = 32, groups = 7;
        var rng = new Random(12);
        var packed = new byte[rows * cols / 2];
        for (int i = 0; i < packed.Length; i++) packed[i] = (byte)(i % 256);
        var scales = Enumerable.Range(0, rows * groups).Select(_ => (byte)rng.Next(127 - 120, 127 + 120)).ToArray();
        var w = new byte[rows * cols * (of == FloatFormat.F32 ? 4 : 2)];
        BlockDequant.Fp4(packed, rows, cols, scales, group, w, of);
        var s2 = (byte[])scales.Clone();
        var p2 = new byte[packed.Length];
        var rep = BlockQuant.Fp4(w, of, rows, cols, s2, group, ScaleMode.Reuse, p2);
        Assert.That(rep.ChangedBlocks, Is.Empty);
        Assert.That(s2, Is.EqualTo(scales));
        Assert.That(p2, Is.EqualTo(packed));
    }

    [Test]
    public void Fp4_CanonicalMatchesReferenceAndReuseOverflow()
    {
        int rows = 20, cols = 96, group = 32, groups = 3;
        var rng = new Random(13);
        var wf = RandomWeights(rows * cols, rng, 32);
        for (int j = 0; j < 32; j++) wf[5 * cols + 32 + j] = 0f;  // zero group [5, 1]
        var scales = new byte[rows * groups];
        var p = new byte[rows * cols / 2];
        BlockQuant.Fp4(H.Bytes(wf), FloatFormat.F32, rows, cols, scales, group, ScaleMode.Canonical, p);
        for (int r = 0; r < rows; r++)
        for (int g = 0; g < groups; g++)
        {
            double amax = Enumerable.Range(g * 32, 32).Max(j => Math.Abs((double)wf[r * cols + j]));
            byte wantCode = amax == 0 ? (byte)127 : (byte)(127 + Math.Ceiling(Math.Log2(amax / 6.0)));
            Assert.That(scales[r * groups + g], Is.EqualTo(wantCode), $"group [{r}, {g}]");
            float s = (float)Ref.E8M0(wantCode);
            for (int j = g * 32; j < g * 32 + 32; j++)
            {
                int nib = (p[(r * cols + j) / 2] >> (j % 2 * 4)) & 15;
                Assert.That(nib, Is.EqualTo(Ref.ToFp4(wf[r * cols + j] / s)), $"[{r},{j}]");
            }
        }
        // overflow in reuse: double one value of group [3, 2] far past 6*s
        var w2 = (float[])wf.Clone();
        w2[3 * cols + 70] = 100f * (float)Ref.E8M0(scales[3 * groups + 2]);
        var s2 = (byte[])scales.Clone();
        var p2 = new byte[p.Length];
        var rep = BlockQuant.Fp4(H.Bytes(w2), FloatFormat.F32, rows, cols, s2, group, ScaleMode.Reuse, p2);
        Assert.That(rep.ChangedBlocks, Is.EqualTo(new[] { (3, 2) }));
        for (int i = 0; i < s2.Length; i++) if (i != 3 * groups + 2) Assert.That(s2[i], Is.EqualTo(scales[i]));
        Assert.That(s2[3 * groups + 2], Is.GreaterThan(scales[3 * groups + 2]));
        for (int i = 0; i < p.Length; i++) if (i / (cols / 2) != 3 || i % (cols / 2) < 32) Assert.That(p2[i], Is.EqualTo(p[i]), $"byte {i}");
        var single = new byte[p.Length];
        var ss = new byte[scales.Length];
        BlockQuant.Fp4(H.Bytes(wf), FloatFormat.F32, rows, cols, ss, group, ScaleMode.Canonical, single, new KernelOptions { MaxThreads = 1 });
        Assert.That(single, Is.EqualTo(p));
        Assert.That(() => BlockQuant.Fp4(new byte[12], FloatFormat.BF16, 2, 3, new byte[2], 32, ScaleMode.Canonical, new byte[3]), Throws.ArgumentException);
    }

    [Test]
    public void Fp4_CanonicalIdempotence()
    {
        int rows = 64, cols = 256, group = 32;
        var rng = new Random(14);
        var wf = RandomWeights(rows * cols, rng, 32);
        for (int r = 0; r < rows; r++) wf[r * cols] = 3.2f * (1 << (r % 6));   // amax/2^k in (3, 3.5): plain rule picks a code-3 max
        foreach (bool idem in new[] { true, false })
        {
            var opt = new KernelOptions { IdempotentPowerOfTwoScales = idem };
            var s1 = new byte[rows * cols / group];
            var p1 = new byte[rows * cols / 2];
            BlockQuant.Fp4(H.Bytes(wf.Select(Ref.ToBf16).ToArray()), FloatFormat.BF16, rows, cols, s1, group, ScaleMode.Canonical, p1, opt);
            var w = new byte[rows * cols * 2];
            BlockDequant.Fp4(p1, rows, cols, s1, group, w, FloatFormat.BF16);
            var s2 = new byte[s1.Length];
            var p2 = new byte[p1.Length];
            BlockQuant.Fp4(w, FloatFormat.BF16, rows, cols, s2, group, ScaleMode.Canonical, p2, opt);
            if (idem)
            {
                Assert.That(s2, Is.EqualTo(s1));
                Assert.That(p2, Is.EqualTo(p1));
            }
            else
            {
                int diff = 0;
                for (int g = 0; g < s1.Length; g++)
                {
                    int maxNib = Enumerable.Range(g * 16, 16).Max(i => Math.Max(p1[i] & 7, (p1[i] >> 4) & 7));
                    if (maxNib == 5) { diff++; Assert.That(s2[g], Is.EqualTo(s1[g] - 1)); }
                    else Assert.That(s2[g], Is.EqualTo(s1[g]));
                }
                Assert.That(diff, Is.GreaterThanOrEqualTo(rows));
            }
        }
    }
}
