using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Mtp.Quant;

/// <summary>
/// Vector512 (AVX-512 F/BW/VBMI) versions of the row kernels. Each computes the same binary32 products and the same
/// round-to-nearest-even BF16 conversion as the Vector256 and scalar code, so the results are bit-identical; the
/// dequantizers gain most from tables: a block's 256 FP8 outputs (or a group's 16 FP4 outputs) are computed once per
/// scale and then looked up with byte/word permutes.
/// </summary>
internal static unsafe partial class VectorKernels
{
    /// <summary>The codes 0..255, to compute a scale's whole FP8 output table with the row kernel itself.</summary>
    static readonly byte* AllCodes = MakeAllCodes();

    static byte* MakeAllCodes()
    {
        var p = (byte*)NativeMemory.Alloc(256);
        for (int i = 0; i < 256; i++) p[i] = (byte)i;
        return p;
    }

    /// <summary>Byte order that makes the in-lane byte interleave (unpack low/high) of a table lookup come out in element order.</summary>
    static readonly Vector512<byte> UnpackOrder = MakeUnpackOrder();

    static Vector512<byte> MakeUnpackOrder()
    {
        var b = new byte[64];
        for (int lane = 0; lane < 4; lane++)
            for (int j = 0; j < 8; j++)
            {
                b[16 * lane + j] = (byte)(8 * lane + j);
                b[16 * lane + 8 + j] = (byte)(32 + 8 * lane + j);
            }
        return Vector512.Create((ReadOnlySpan<byte>)b);
    }

    /// <summary>Control that puts packed byte i/2 into both bytes of word i (i &lt; 32).</summary>
    static readonly Vector512<byte> NibbleBytesToWords = Vector512.Create((ReadOnlySpan<byte>)Enumerable.Range(0, 64).Select(k => (byte)(k / 4)).ToArray());

    /// <summary>Control that puts packed byte <c>first</c> + i/2 into every byte of dword i (i &lt; 16).</summary>
    static Vector512<byte> NibbleBytesToDwords(int first) =>
        Vector512.Create((ReadOnlySpan<byte>)Enumerable.Range(0, 64).Select(k => (byte)(first + k / 8)).ToArray());

    static readonly Vector512<byte> NibbleDwordsLow = NibbleBytesToDwords(0), NibbleDwordsHigh = NibbleBytesToDwords(8);

    // ---------------------------------------------------------------- shared helpers

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static Vector512<float> DecodeE4M3(Vector512<uint> u)
    {
        Vector512<uint> em = u & Vector512.Create(0x7Fu);
        Vector512<uint> sign = (u & Vector512.Create(0x80u)) << 24;
        Vector512<uint> norm = (em << 20) + Vector512.Create(120u << 23);
        Vector512<uint> sub = (Vector512.ConvertToSingle(em.AsInt32()) * Vector512.Create(1f / 512f)).AsUInt32();
        Vector512<uint> v = Vector512.ConditionalSelect(Vector512.LessThan(em, Vector512.Create(8u)), sub, norm);
        v = Vector512.ConditionalSelect(Vector512.Equals(em, Vector512.Create(0x7Fu)), Vector512.Create(0x7FF00000u), v);
        return (v | sign).AsSingle();
    }

    /// <summary>binary32 to bfloat16 bits (in uint lanes), RNE, every NaN -> 0x7FC0 (PyTorch).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static Vector512<uint> ToBf16(Vector512<float> f)
    {
        Vector512<uint> b = f.AsUInt32();
        Vector512<uint> r = (b + Vector512.Create(0x7FFFu) + ((b >> 16) & Vector512.Create(1u))) >> 16;
        return Vector512.ConditionalSelect(Vector512.Equals(f, f).AsUInt32(), r, Vector512.Create(0x7FC0u));
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static void StoreBf16(Vector512<float> f, ushort* d) => Avx512F.ConvertToVector256UInt16(ToBf16(f)).Store(d);

    // ---------------------------------------------------------------- FP8 dequant

    /// <summary>Vector512 part of <see cref="Fp8Row"/>: whole 64-element steps; returns the elements done.</summary>
    static int Fp8Row512(byte* src, int n, float s, byte* dst, FloatFormat fmt)
    {
        int i = 0;
        Vector512<float> sv = Vector512.Create(s);
        if (fmt == FloatFormat.BF16)
        {
            ushort* d = (ushort*)dst;
            for (; i <= n - 64; i += 64)
            {
                StoreBf16(DecodeE4M3(Avx512F.ConvertToVector512UInt32(Vector128.Load(src + i))) * sv, d + i);
                StoreBf16(DecodeE4M3(Avx512F.ConvertToVector512UInt32(Vector128.Load(src + i + 16))) * sv, d + i + 16);
                StoreBf16(DecodeE4M3(Avx512F.ConvertToVector512UInt32(Vector128.Load(src + i + 32))) * sv, d + i + 32);
                StoreBf16(DecodeE4M3(Avx512F.ConvertToVector512UInt32(Vector128.Load(src + i + 48))) * sv, d + i + 48);
            }
        }
        else
        {
            float* d = (float*)dst;
            for (; i <= n - 64; i += 64)
            {
                (DecodeE4M3(Avx512F.ConvertToVector512UInt32(Vector128.Load(src + i))) * sv).Store(d + i);
                (DecodeE4M3(Avx512F.ConvertToVector512UInt32(Vector128.Load(src + i + 16))) * sv).Store(d + i + 16);
                (DecodeE4M3(Avx512F.ConvertToVector512UInt32(Vector128.Load(src + i + 32))) * sv).Store(d + i + 32);
                (DecodeE4M3(Avx512F.ConvertToVector512UInt32(Vector128.Load(src + i + 48))) * sv).Store(d + i + 48);
            }
        }
        return i;
    }

    /// <summary>
    /// BF16 dequantization of FP8 rows [<paramref name="r0"/>, <paramref name="r1"/>) of a [*, <paramref name="cols"/>]
    /// weight that all lie in one row of blocks, whose <paramref name="gc"/> scales (block width <paramref name="b1"/>) are
    /// <paramref name="scales"/>. For each block the 256 possible outputs come from <see cref="Fp8Row"/> on the codes
    /// 0..255 (so they are that kernel's results by construction), stored as a low-byte and a high-byte plane; the rows are
    /// then walked in memory order and each code is looked up with two 128-entry byte permutes per plane, chosen by the
    /// code's top bit. Needs <see cref="VectorWidth.Use512"/>.
    /// </summary>
    public static void Fp8RowsBf16(byte* codes, int cols, int r0, int r1, int gc, int b1, float* scales, ushort* output)
    {
        byte* planes = (byte*)NativeMemory.AlignedAlloc((nuint)gc * 512, 64);
        try
        {
            ushort* lut = stackalloc ushort[256];
            Vector512<ushort> lowByte = Vector512.Create((ushort)0xFF);
            for (int bc = 0; bc < gc; bc++)
            {
                Fp8Row(AllCodes, 256, scales[bc], (byte*)lut, FloatFormat.BF16);
                byte* pl = planes + bc * 512;
                for (int k = 0; k < 4; k++)
                {
                    Vector512<ushort> a = Vector512.Load(lut + 64 * k), b = Vector512.Load(lut + 64 * k + 32);
                    Vector512.Narrow(a & lowByte, b & lowByte).Store(pl + 64 * k);
                    Vector512.Narrow(a >> 8, b >> 8).Store(pl + 256 + 64 * k);
                }
            }
            Vector512<byte> order = UnpackOrder;
            for (int r = r0; r < r1; r++)
            {
                byte* crow = codes + (long)r * cols;
                ushort* orow = output + (long)r * cols;
                for (int bc = 0; bc < gc; bc++)
                {
                    int j0 = bc * b1, n = Math.Min(b1, cols - j0);
                    byte* pl = planes + bc * 512, src = crow + j0;
                    ushort* d = orow + j0;
                    int i = 0;
                    if (n >= 64)
                    {
                        Vector512<byte> lo0 = Vector512.Load(pl), lo1 = Vector512.Load(pl + 64), lo2 = Vector512.Load(pl + 128), lo3 = Vector512.Load(pl + 192);
                        Vector512<byte> hi0 = Vector512.Load(pl + 256), hi1 = Vector512.Load(pl + 320), hi2 = Vector512.Load(pl + 384), hi3 = Vector512.Load(pl + 448);
                        for (; i <= n - 64; i += 64)
                        {
                            Vector512<byte> p = Avx512Vbmi.PermuteVar64x8(Vector512.Load(src + i), order);
                            Vector512<byte> top = Vector512.LessThan(p.AsSByte(), Vector512<sbyte>.Zero).AsByte();
                            Vector512<byte> lo = Vector512.ConditionalSelect(top, Avx512Vbmi.PermuteVar64x8x2(lo2, p, lo3), Avx512Vbmi.PermuteVar64x8x2(lo0, p, lo1));
                            Vector512<byte> hi = Vector512.ConditionalSelect(top, Avx512Vbmi.PermuteVar64x8x2(hi2, p, hi3), Avx512Vbmi.PermuteVar64x8x2(hi0, p, hi1));
                            Avx512BW.UnpackLow(lo, hi).AsUInt16().Store(d + i);
                            Avx512BW.UnpackHigh(lo, hi).AsUInt16().Store(d + i + 32);
                        }
                    }
                    for (; i < n; i++) d[i] = (ushort)(pl[src[i]] | (pl[256 + src[i]] << 8));
                }
            }
        }
        finally { NativeMemory.AlignedFree(planes); }
    }

    // ---------------------------------------------------------------- FP4 dequant

    /// <summary>
    /// One row of <see cref="BlockDequant.Fp4"/> for a group size that is a multiple of 32: per group the 16 outputs
    /// (E2M1 value times the scale, rounded) are computed once and each nibble is looked up with a word (BF16) or dword
    /// (F32) permute. A last partial group goes through <see cref="Fp4Run"/>. Needs <see cref="VectorWidth.Use512"/>.
    /// </summary>
    public static void Fp4Row512(byte* packed, int cols, byte* scales, int groupSize, byte* dst, FloatFormat fmt)
    {
        int groups = (cols + groupSize - 1) / groupSize;
        Vector512<float> values;
        fixed (float* t = Fp4E2M1.Table) values = Vector512.Load(t);
        Vector512<byte> toWords = NibbleBytesToWords, toDwLo = NibbleDwordsLow, toDwHi = NibbleDwordsHigh;
        Vector512<ushort> shiftW = Vector512.Create((ReadOnlySpan<ushort>)[0, 4, 0, 4, 0, 4, 0, 4, 0, 4, 0, 4, 0, 4, 0, 4,
            0, 4, 0, 4, 0, 4, 0, 4, 0, 4, 0, 4, 0, 4, 0, 4]);
        Vector512<uint> shiftD = Vector512.Create((ReadOnlySpan<uint>)[0, 4, 0, 4, 0, 4, 0, 4, 0, 4, 0, 4, 0, 4, 0, 4]);
        for (int g = 0; g < groups; g++)
        {
            int c0 = g * groupSize, n = Math.Min(groupSize, cols - c0), full = n & ~31;
            float s = E8M0.ToFloat(scales[g]);
            Vector512<float> prod = values * Vector512.Create(s);
            byte* p = packed + c0 / 2;
            if (fmt == FloatFormat.BF16)
            {
                Vector512<ushort> table = Avx512F.ConvertToVector256UInt16(ToBf16(prod)).ToVector512Unsafe();
                ushort* d = (ushort*)dst + c0;
                for (int k = 0; k < full; k += 32)
                {
                    Vector512<byte> raw = Vector128.Load(p + k / 2).ToVector256Unsafe().ToVector512Unsafe();
                    Vector512<ushort> w = Avx512Vbmi.PermuteVar64x8(raw, toWords).AsUInt16();
                    Vector512<ushort> nib = Avx512BW.ShiftRightLogicalVariable(w, shiftW) & Vector512.Create((ushort)15);
                    Avx512BW.PermuteVar32x16(table, nib).Store(d + k);
                }
            }
            else
            {
                Vector512<uint> table = prod.AsUInt32();
                uint* d = (uint*)dst + c0;
                for (int k = 0; k < full; k += 32)
                {
                    Vector512<byte> raw = Vector128.Load(p + k / 2).ToVector256Unsafe().ToVector512Unsafe();
                    Vector512<uint> a = Avx512F.ShiftRightLogicalVariable(Avx512Vbmi.PermuteVar64x8(raw, toDwLo).AsUInt32(), shiftD) & Vector512.Create(15u);
                    Vector512<uint> b = Avx512F.ShiftRightLogicalVariable(Avx512Vbmi.PermuteVar64x8(raw, toDwHi).AsUInt32(), shiftD) & Vector512.Create(15u);
                    Avx512F.PermuteVar16x32(table, a).Store(d + k);
                    Avx512F.PermuteVar16x32(table, b).Store(d + k + 16);
                }
            }
            if (full < n)
                Fp4Run(p + full / 2, (n - full) / 2, s, dst + (long)(c0 + full) * BlockDequant.BytesPerElement(fmt), fmt);
        }
    }

    // ---------------------------------------------------------------- input widening and FP8 quant

    /// <summary>Vector512 part of <see cref="ToF32"/> for BF16 input; returns the elements done.</summary>
    static int ToF32Bf16_512(ushort* s, int n, float* dst)
    {
        int i = 0;
        for (; i <= n - 32; i += 32)
        {
            (Avx512F.ConvertToVector512UInt32(Vector256.Load(s + i)) << 16).Store((uint*)dst + i);
            (Avx512F.ConvertToVector512UInt32(Vector256.Load(s + i + 16)) << 16).Store((uint*)dst + i + 16);
        }
        return i;
    }

    /// <summary>
    /// E4M3 code of <c>clamp(q, -448, 448)</c> (PyTorch rounding, as the Vector256 encoder) for non-NaN q in fewer instructions: the magnitude is clamped with a plain
    /// <c>vminps</c> (no NaN or signed-zero cases to handle) and the sign bit is put back with one ternary-logic op.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector512<uint> EncodeClampedE4M3(Vector512<float> q)
    {
        Vector512<uint> bits = q.AsUInt32();
        Vector512<uint> a = Avx512F.Min((bits & Vector512.Create(0x7FFFFFFFu)).AsSingle(), Vector512.Create(448f)).AsUInt32();
        Vector512<uint> norm = (a + Vector512.Create(unchecked((uint)((7 - 127) << 23)) + 0x7FFFFu) + ((a >> 20) & Vector512.Create(1u))) >> 20;
        Vector512<uint> sub = (a.AsSingle() + Vector512.Create(16384f)).AsUInt32() - Vector512.Create(141u << 23);
        Vector512<uint> r = Vector512.ConditionalSelect(Vector512.LessThan(a, Vector512.Create(121u << 23)), sub, norm);
        // r | ((bits >> 24) & 0x80): ternary-logic table 0xF8 is A | (B & C).
        return Avx512F.TernaryLogic(r, bits >> 24, Vector512.Create(0x80u), 0xF8);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static Vector128<byte> QuantFp8x16(float* w, Vector512<float> sv) =>
        Avx512F.ConvertToVector128Byte(EncodeClampedE4M3(Vector512.Load(w) / sv));

    /// <summary>Vector512 part of <see cref="QuantFp8Row"/>; returns the elements done.</summary>
    static int QuantFp8Row512(float* w, int n, float s, byte* codes)
    {
        int i = 0;
        Vector512<float> sv = Vector512.Create(s);
        for (; i <= n - 64; i += 64)
        {
            QuantFp8x16(w + i, sv).Store(codes + i);
            QuantFp8x16(w + i + 16, sv).Store(codes + i + 16);
            QuantFp8x16(w + i + 32, sv).Store(codes + i + 32);
            QuantFp8x16(w + i + 48, sv).Store(codes + i + 48);
        }
        return i;
    }

    /// <summary>Largest magnitude, as binary32, of each of the <paramref name="gc"/> BF16 blocks (width <paramref name="b1"/>) of rows
    /// [r0, r0 + nr), read row by row; NaN or infinite for a block that holds one (BF16 magnitudes order like their bit patterns).</summary>
    public static float[] AmaxBf16Blocks(ushort* input, int cols, int r0, int nr, int b1, int gc)
    {
        var acc = new Vector512<ushort>[gc];
        var tail = new int[gc];
        Vector512<ushort> mask = Vector512.Create((ushort)0x7FFF);
        for (int r = r0; r < r0 + nr; r++)
        {
            ushort* row = input + (long)r * cols;
            for (int bc = 0; bc < gc; bc++)
            {
                int j0 = bc * b1, nc = Math.Min(b1, cols - j0);
                ushort* u = row + j0;
                Vector512<ushort> a = acc[bc];
                int i = 0;
                for (; i <= nc - 32; i += 32) a = Vector512.Max(a, Vector512.Load(u + i) & mask);
                acc[bc] = a;
                for (; i < nc; i++) tail[bc] = Math.Max(tail[bc], u[i] & 0x7FFF);
            }
        }
        return BlockMaxima(acc, tail);
    }

    /// <summary>Per-block maxima from the vector and tail accumulators of BF16 magnitude bits, as binary32.</summary>
    internal static float[] BlockMaxima(Vector512<ushort>[] acc, int[] tail)
    {
        var amax = new float[acc.Length];
        for (int bc = 0; bc < acc.Length; bc++)
            amax[bc] = BFloat16.ToFloat((ushort)Math.Max(tail[bc], MaxOf(Vector256.Max(acc[bc].GetLower(), acc[bc].GetUpper()))));
        return amax;
    }

    static int MaxOf(Vector256<ushort> v)
    {
        int m = 0;
        for (int i = 0; i < 16; i++) m = Math.Max(m, v.GetElement(i));
        return m;
    }

    /// <summary>codes[i] = E4M3(clamp(float(bf16[i]) / s, -448, 448)) for finite input, straight from BF16 (no binary32 copy).</summary>
    public static void QuantFp8RowBf16(ushort* w, int n, float s, byte* codes)
    {
        int i = 0;
        Vector512<float> sv = Vector512.Create(s);
        for (; i <= n - 32; i += 32)
        {
            Vector512<float> a = (Avx512F.ConvertToVector512UInt32(Vector256.Load(w + i)) << 16).AsSingle();
            Vector512<float> b = (Avx512F.ConvertToVector512UInt32(Vector256.Load(w + i + 16)) << 16).AsSingle();
            Avx512F.ConvertToVector128Byte(EncodeClampedE4M3(a / sv)).Store(codes + i);
            Avx512F.ConvertToVector128Byte(EncodeClampedE4M3(b / sv)).Store(codes + i + 16);
        }
        for (; i < n; i++) codes[i] = Fp8E4M3.FromFloat(Math.Clamp(BFloat16.ToFloat(w[i]) / s, -448f, 448f));
    }

    /// <summary>Dword lanes of a two-step unsigned pack (dword -> word -> byte, per 128-bit lane) back in element order.</summary>
    static readonly Vector512<uint> PackOrder = Vector512.Create((ReadOnlySpan<uint>)[0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15]);

    /// <summary>
    /// One BF16 row of <see cref="BlockQuant.Fp8"/>: for each of the <paramref name="gc"/> blocks (width <paramref name="b1"/>),
    /// codes = E4M3(clamp(float(bf16) / divs[bc], -448, 448)), as <see cref="QuantFp8RowBf16"/> computes them.
    /// </summary>
    /// <remarks>With <paramref name="acc"/> and <paramref name="tail"/> (one per block) it also accumulates each block's largest
    /// BF16 magnitude bits, so that a quantizer that guessed its scales can check them after this one pass. With
    /// <paramref name="luts"/> (from <see cref="Fp8QuantLut.Build"/> per block, constants -1 where a divisor is not served) the
    /// whole 64-weight steps of a served block go through <see cref="Fp8QuantLut.Row"/> instead of a division.</remarks>
    public static void QuantFp8RowsBf16(ushort* row, int cols, int b1, int gc, float[] divs, byte* codes,
        Vector512<ushort>[]? acc = null, int[]? tail = null, (IntPtr Tables, int[] Constants)? luts = null)
    {
        Vector512<ushort> mask = Vector512.Create((ushort)0x7FFF);
        bool track = acc != null && tail != null;
        Vector512<uint> order = PackOrder;
        for (int bc = 0; bc < gc; bc++)
        {
            int j0 = bc * b1, n = Math.Min(b1, cols - j0);
            ushort* w = row + j0;
            byte* o = codes + j0;
            float s = divs[bc];
            Vector512<float> sv = Vector512.Create(s);
            Vector512<ushort> a = track ? acc![bc] : default;
            int i = 0;
            if (luts is { } l && l.Constants[bc] >= 0)
                i = Fp8QuantLut.Row(w, n, (byte*)l.Tables + (long)bc * Fp8QuantLut.TableBytes, l.Constants[bc], o, ref a, track);
            for (; i <= n - 64; i += 64)
            {
                if (track) a = Vector512.Max(a, Vector512.Max(Vector512.Load(w + i) & mask, Vector512.Load(w + i + 32) & mask));
                Vector512<int> c0 = EncodeClampedE4M3((Avx512F.ConvertToVector512UInt32(Vector256.Load(w + i)) << 16).AsSingle() / sv).AsInt32();
                Vector512<int> c1 = EncodeClampedE4M3((Avx512F.ConvertToVector512UInt32(Vector256.Load(w + i + 16)) << 16).AsSingle() / sv).AsInt32();
                Vector512<int> c2 = EncodeClampedE4M3((Avx512F.ConvertToVector512UInt32(Vector256.Load(w + i + 32)) << 16).AsSingle() / sv).AsInt32();
                Vector512<int> c3 = EncodeClampedE4M3((Avx512F.ConvertToVector512UInt32(Vector256.Load(w + i + 48)) << 16).AsSingle() / sv).AsInt32();
                Vector512<byte> b = Avx512BW.PackUnsignedSaturate(Avx512BW.PackSignedSaturate(c0, c1), Avx512BW.PackSignedSaturate(c2, c3));
                Avx512F.PermuteVar16x32(b.AsUInt32(), order).AsByte().Store(o + i);
            }
            if (track)
            {
                acc![bc] = a;
                for (int k = i; k < n; k++) tail![bc] = Math.Max(tail[bc], w[k] & 0x7FFF);
            }
            if (i < n) QuantFp8RowBf16(w + i, n - i, s, o + i);
        }
    }
}
