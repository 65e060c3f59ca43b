using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace Mtp.Quant;

/// <summary>Row kernels shared by the block (de)quantizers. All take raw pointers; callers validate lengths.</summary>
internal static unsafe partial class VectorKernels
{
    // ---------------------------------------------------------------- decode helpers

    /// <summary>E4M3 codes (0..255 in uint lanes) to binary32, gather-free: exponent rebias for normals,
    /// int->float for subnormals, NaN pattern for 0x7F/0xFF.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static Vector256<float> DecodeE4M3(Vector256<uint> u)
    {
        Vector256<uint> em = u & Vector256.Create(0x7Fu);
        Vector256<uint> sign = (u & Vector256.Create(0x80u)) << 24;
        Vector256<uint> norm = (em << 20) + Vector256.Create(120u << 23);
        Vector256<uint> sub = (Vector256.ConvertToSingle(em.AsInt32()) * Vector256.Create(1f / 512f)).AsUInt32();
        Vector256<uint> v = Vector256.ConditionalSelect(Vector256.LessThan(em, Vector256.Create(8u)), sub, norm);
        v = Vector256.ConditionalSelect(Vector256.Equals(em, Vector256.Create(0x7Fu)), Vector256.Create(0x7FF00000u), v);
        return (v | sign).AsSingle();
    }

    /// <summary>E2M1 nibbles (0..15 in uint lanes) to binary32.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static Vector256<float> DecodeE2M1(Vector256<uint> u)
    {
        Vector256<uint> em = u & Vector256.Create(7u);
        Vector256<uint> sign = (u & Vector256.Create(8u)) << 28;
        Vector256<uint> norm = (em << 22) + Vector256.Create(126u << 23);
        Vector256<uint> sub = (Vector256.ConvertToSingle(em.AsInt32()) * Vector256.Create(0.5f)).AsUInt32();
        Vector256<uint> v = Vector256.ConditionalSelect(Vector256.LessThan(em, Vector256.Create(2u)), sub, norm);
        return (v | sign).AsSingle();
    }

    /// <summary>binary32 to bfloat16 bits (in uint lanes), RNE, every NaN -> 0x7FC0 (PyTorch).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static Vector256<uint> ToBf16(Vector256<float> f)
    {
        Vector256<uint> b = f.AsUInt32();
        Vector256<uint> r = (b + Vector256.Create(0x7FFFu) + ((b >> 16) & Vector256.Create(1u))) >> 16;
        return Vector256.ConditionalSelect(Vector256.Equals(f, f).AsUInt32(), r, Vector256.Create(0x7FC0u));
    }

    // ---------------------------------------------------------------- FP8 dequant

    /// <summary>dst[i] = round(fp8(src[i]) * s) for i in [0, n).</summary>
    public static void Fp8Row(byte* src, int n, float s, byte* dst, FloatFormat fmt)
    {
        int i = VectorWidth.Use512 ? Fp8Row512(src, n, s, dst, fmt) : 0;
        if (Vector256.IsHardwareAccelerated)
        {
            Vector256<float> sv = Vector256.Create(s);
            if (fmt == FloatFormat.BF16)
            {
                ushort* d = (ushort*)dst;
                for (; i <= n - 32; i += 32)
                {
                    Vector256<byte> raw = Vector256.Load(src + i);
                    (Vector256<ushort> w0, Vector256<ushort> w1) = Vector256.Widen(raw);
                    (Vector256<uint> u0, Vector256<uint> u1) = Vector256.Widen(w0);
                    (Vector256<uint> u2, Vector256<uint> u3) = Vector256.Widen(w1);
                    Vector256<uint> b0 = ToBf16(DecodeE4M3(u0) * sv);
                    Vector256<uint> b1 = ToBf16(DecodeE4M3(u1) * sv);
                    Vector256<uint> b2 = ToBf16(DecodeE4M3(u2) * sv);
                    Vector256<uint> b3 = ToBf16(DecodeE4M3(u3) * sv);
                    Vector256.Narrow(b0, b1).Store(d + i);
                    Vector256.Narrow(b2, b3).Store(d + i + 16);
                }
            }
            else
            {
                float* d = (float*)dst;
                for (; i <= n - 32; i += 32)
                {
                    Vector256<byte> raw = Vector256.Load(src + i);
                    (Vector256<ushort> w0, Vector256<ushort> w1) = Vector256.Widen(raw);
                    (Vector256<uint> u0, Vector256<uint> u1) = Vector256.Widen(w0);
                    (Vector256<uint> u2, Vector256<uint> u3) = Vector256.Widen(w1);
                    (DecodeE4M3(u0) * sv).Store(d + i);
                    (DecodeE4M3(u1) * sv).Store(d + i + 8);
                    (DecodeE4M3(u2) * sv).Store(d + i + 16);
                    (DecodeE4M3(u3) * sv).Store(d + i + 24);
                }
            }
        }
        for (; i < n; i++)
        {
            float v = Fp8E4M3.Table[src[i]] * s;
            if (fmt == FloatFormat.F32) ((float*)dst)[i] = v;
            else ((ushort*)dst)[i] = BFloat16.FromFloat(v);
        }
    }

    // ---------------------------------------------------------------- FP4 dequant

    /// <summary>Decodes <paramref name="nPairs"/> packed bytes (2*nPairs logical values) times s.</summary>
    public static void Fp4Run(byte* src, int nPairs, float s, byte* dst, FloatFormat fmt)
    {
        int p = 0;
        if (Vector256.IsHardwareAccelerated)
        {
            Vector256<float> sv = Vector256.Create(s);
            for (; p <= nPairs - 16; p += 16)
            {
                Vector128<byte> raw = Vector128.Load(src + p);
                Vector256<ushort> w = Vector256.WidenLower(Vector256.Create(raw, raw));
                // low byte of each ushort = low nibble (even column), high byte = high nibble (odd column)
                Vector256<byte> nib = ((w & Vector256.Create((ushort)0x0F)) | ((w & Vector256.Create((ushort)0xF0)) << 4)).AsByte();
                (Vector256<ushort> n0, Vector256<ushort> n1) = Vector256.Widen(nib);
                (Vector256<uint> u0, Vector256<uint> u1) = Vector256.Widen(n0);
                (Vector256<uint> u2, Vector256<uint> u3) = Vector256.Widen(n1);
                int o = 2 * p;
                if (fmt == FloatFormat.BF16)
                {
                    ushort* d = (ushort*)dst;
                    Vector256.Narrow(ToBf16(DecodeE2M1(u0) * sv), ToBf16(DecodeE2M1(u1) * sv)).Store(d + o);
                    Vector256.Narrow(ToBf16(DecodeE2M1(u2) * sv), ToBf16(DecodeE2M1(u3) * sv)).Store(d + o + 16);
                }
                else
                {
                    float* d = (float*)dst;
                    (DecodeE2M1(u0) * sv).Store(d + o);
                    (DecodeE2M1(u1) * sv).Store(d + o + 8);
                    (DecodeE2M1(u2) * sv).Store(d + o + 16);
                    (DecodeE2M1(u3) * sv).Store(d + o + 24);
                }
            }
        }
        for (; p < nPairs; p++)
        {
            byte b = src[p];
            float lo = Fp4E2M1.Table[b & 15] * s, hi = Fp4E2M1.Table[b >> 4] * s;
            if (fmt == FloatFormat.F32) { ((float*)dst)[2 * p] = lo; ((float*)dst)[2 * p + 1] = hi; }
            else { ((ushort*)dst)[2 * p] = BFloat16.FromFloat(lo); ((ushort*)dst)[2 * p + 1] = BFloat16.FromFloat(hi); }
        }
    }

    // ---------------------------------------------------------------- input widening

    /// <summary>Copies n elements of F32 or BF16 input to binary32.</summary>
    public static void ToF32(byte* src, FloatFormat fmt, int n, float* dst)
    {
        if (fmt == FloatFormat.F32) { Buffer.MemoryCopy(src, dst, (long)n * 4, (long)n * 4); return; }
        ushort* s = (ushort*)src;
        int i = VectorWidth.Use512 ? ToF32Bf16_512(s, n, dst) : 0;
        if (Vector256.IsHardwareAccelerated)
        {
            for (; i <= n - 16; i += 16)
            {
                (Vector256<uint> a, Vector256<uint> b) = Vector256.Widen(Vector256.Load(s + i));
                (a << 16).Store((uint*)dst + i);
                (b << 16).Store((uint*)dst + i + 8);
            }
        }
        for (; i < n; i++) dst[i] = BFloat16.ToFloat(s[i]);
    }

    // ---------------------------------------------------------------- FP8 quant

    /// <summary>E4M3 code of a value already clamped to [-448, 448] (finite), PyTorch rounding.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static Vector256<uint> EncodeE4M3(Vector256<float> q)
    {
        Vector256<uint> bits = q.AsUInt32();
        Vector256<uint> sign = bits & Vector256.Create(0x80000000u);
        Vector256<uint> a = bits ^ sign;
        Vector256<uint> norm = (a + Vector256.Create(unchecked((uint)((7 - 127) << 23)) + 0x7FFFFu) + ((a >> 20) & Vector256.Create(1u))) >> 20;
        Vector256<uint> sub = (a.AsSingle() + Vector256.Create(16384f)).AsUInt32() - Vector256.Create(141u << 23);
        Vector256<uint> r = Vector256.ConditionalSelect(Vector256.LessThan(a, Vector256.Create(121u << 23)), sub, norm);
        return r | (sign >> 24);
    }

    /// <summary>codes[i] = E4M3(clamp(w[i] / s, -448, 448)) for finite w.</summary>
    public static void QuantFp8Row(float* w, int n, float s, byte* codes)
    {
        int i = VectorWidth.Use512 ? QuantFp8Row512(w, n, s, codes) : 0;
        if (Vector256.IsHardwareAccelerated)
        {
            Vector256<float> sv = Vector256.Create(s), hi = Vector256.Create(448f), lo = Vector256.Create(-448f);
            for (; i <= n - 32; i += 32)
            {
                Vector256<uint> c0 = EncodeE4M3(Vector256.Min(Vector256.Max(Vector256.Load(w + i) / sv, lo), hi));
                Vector256<uint> c1 = EncodeE4M3(Vector256.Min(Vector256.Max(Vector256.Load(w + i + 8) / sv, lo), hi));
                Vector256<uint> c2 = EncodeE4M3(Vector256.Min(Vector256.Max(Vector256.Load(w + i + 16) / sv, lo), hi));
                Vector256<uint> c3 = EncodeE4M3(Vector256.Min(Vector256.Max(Vector256.Load(w + i + 24) / sv, lo), hi));
                Vector256.Narrow(Vector256.Narrow(c0, c1), Vector256.Narrow(c2, c3)).Store(codes + i);
            }
        }
        for (; i < n; i++) codes[i] = Fp8E4M3.FromFloat(Math.Clamp(w[i] / s, -448f, 448f));
    }
}
