using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Mtp.Quant;

/// <summary>Vector512 versions of the exact encoders: the same bit tests on 32 BF16 values per step (see <see cref="ExactEncode"/>).</summary>
public static partial class ExactEncode
{
    /// <summary>All FP4 codes of <paramref name="n"/> BF16 values, 32 (one scale) per step; false when one is not exact.</summary>
    static unsafe bool Fp4Codes512(ushort* u, long n, byte* scales, int groupSize, byte* packed)
    {
        var bad = Vector512<ushort>.Zero;
        for (long i = 0; i < n; i += 32)
        {
            Vector512<uint> p = Fp4Codes(Vector512.Load(u + i), scales[i / groupSize], ref bad).AsUInt32();
            p = (p & Vector512.Create(0xFu)) | ((p >> 12) & Vector512.Create(0xF0u));
            Avx512F.ConvertToVector128Byte(p).Store(packed + i / 2);
        }
        return bad == Vector512<ushort>.Zero;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static Vector512<ushort> Fp4Codes(Vector512<ushort> u, int s, ref Vector512<ushort> bad)
    {
        Vector512<ushort> mag = u & Vector512.Create((ushort)0x7FFF);
        Vector512<ushort> sign = (u >> 15) << 3;
        Vector512<ushort> exp = mag >> 7, mant = mag & Vector512.Create((ushort)0x7F);
        Vector512<ushort> e = exp - Vector512.Create((ushort)(s - 1));
        Vector512<ushort> m = mant >> 6;
        Vector512<ushort> code = Vector512.ConditionalSelect(Vector512.Equals(e, Vector512<ushort>.Zero), Vector512.Create((ushort)1), (e << 1) + m);
        Vector512<ushort> isZero = Vector512.Equals(mag, Vector512<ushort>.Zero);
        Vector512<ushort> ok = Vector512.LessThanOrEqual(e, Vector512.Create((ushort)3))
            & Vector512.Equals(mant & Vector512.Create((ushort)0x3F), Vector512<ushort>.Zero)
            & ~(Vector512.Equals(e, Vector512<ushort>.Zero) & Vector512.Equals(m, Vector512.Create((ushort)1)));
        bad |= ~(ok | isZero);
        return Vector512.ConditionalSelect(isZero, Vector512<ushort>.Zero, code) | sign;
    }

    /// <summary>All FP8 codes of a BF16 weight whose columns and block columns are multiples of 32; false when one is not exact.</summary>
    static unsafe bool Fp8Codes512(byte* input, int rows, int cols, byte* scales, int gc, BlockSize block, byte* codes)
    {
        var bad = Vector512<ushort>.Zero;
        for (int r = 0; r < rows; r++)
        {
            ushort* u = (ushort*)input + (long)r * cols;
            byte* o = codes + (long)r * cols;
            byte* srow = scales + (long)(r / block.Rows) * gc;
            for (int j = 0; j < cols; j += 32)
                Avx512BW.ConvertToVector256Byte(Fp8Codes(Vector512.Load(u + j), srow[j / block.Cols], ref bad)).Store(o + j);
        }
        return bad == Vector512<ushort>.Zero;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static Vector512<ushort> Fp8Codes(Vector512<ushort> u, int s, ref Vector512<ushort> bad)
    {
        Vector512<ushort> mag = u & Vector512.Create((ushort)0x7FFF);
        Vector512<ushort> sign = (u >> 15) << 7;
        Vector512<ushort> exp = mag >> 7, mant = mag & Vector512.Create((ushort)0x7F);
        Vector512<ushort> t = exp - Vector512.Create((ushort)(s - 10));
        Vector512<ushort> normal = Vector512.GreaterThanOrEqual(t, Vector512.Create((ushort)4)) & Vector512.LessThanOrEqual(t, Vector512.Create((ushort)18));
        Vector512<ushort> codeN = ((t - Vector512.Create((ushort)3)) << 3) | (mant >> 4);
        Vector512<ushort> okN = normal & Vector512.Equals(mant & Vector512.Create((ushort)0xF), Vector512<ushort>.Zero)
            & ~Vector512.Equals(codeN, Vector512.Create((ushort)0x7F));
        Vector512<ushort> t3 = Vector512.Equals(t, Vector512.Create((ushort)3)), t2 = Vector512.Equals(t, Vector512.Create((ushort)2)),
            t1 = Vector512.Equals(t, Vector512.Create((ushort)1));
        Vector512<ushort> codeS = (t3 & (Vector512.Create((ushort)4) + (mant >> 5))) | (t2 & (Vector512.Create((ushort)2) + (mant >> 6))) | (t1 & Vector512.Create((ushort)1));
        Vector512<ushort> okS = (t3 & Vector512.Equals(mant & Vector512.Create((ushort)0x1F), Vector512<ushort>.Zero))
            | (t2 & Vector512.Equals(mant & Vector512.Create((ushort)0x3F), Vector512<ushort>.Zero))
            | (t1 & Vector512.Equals(mant, Vector512<ushort>.Zero));
        Vector512<ushort> isZero = Vector512.Equals(mag, Vector512<ushort>.Zero);
        bad |= ~(okN | okS | isZero);
        Vector512<ushort> code = Vector512.ConditionalSelect(normal, codeN, codeS);
        return Vector512.ConditionalSelect(isZero, Vector512<ushort>.Zero, code) | sign;
    }
}
