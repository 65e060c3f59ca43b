using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Mtp.Quant;

/// <summary>
/// Vector512 exact encoders with the check fused into the same pass: 32 BF16 values are loaded once, encoded to codes
/// (bit arithmetic on the input), the code bytes are stored and, from the same registers, decoded by a separate
/// computation that starts from the code (the format's value definition plus the scale's exponent) and compared with the
/// loaded input. A value counts as exact only when its stored code decodes to it bit for bit, as
/// <see cref="BlockDequant"/> would (within the accepted scale ranges every product is an exact, normal BF16 number,
/// so the multiply and the rounding of the dequantizer are an exponent addition here).
/// </summary>
public static partial class ExactEncode
{
    /// <summary>BF16 bits of k * 2^-9 (the E4M3 subnormals and zero at scale 2^0) for k = 0..7, from the format's value table.</summary>
    static readonly Vector512<ushort> E4M3Subnormals = Vector512.Create((ReadOnlySpan<ushort>)
        Enumerable.Range(0, 32).Select(k => k < 8 ? Bf16Bits(Fp8E4M3.ToFloat((byte)k)) : (ushort)0).ToArray());

    /// <summary>BF16 bits of every E2M1 code's value at scale 2^0 (index = code, 0..15), from the format's value table.</summary>
    static readonly Vector512<ushort> E2M1Values = Vector512.Create((ReadOnlySpan<ushort>)
        Enumerable.Range(0, 32).Select(k => k < 16 ? Bf16Bits(Fp4E2M1.ToFloat(k)) : (ushort)0).ToArray());

    /// <summary>All ones in the lanes of <see cref="E2M1Values"/> that are not a zero (those take the scale's exponent).</summary>
    static readonly Vector512<ushort> E2M1NonZero = Vector512.Create((ReadOnlySpan<ushort>)
        Enumerable.Range(0, 32).Select(k => k < 16 && (k & 7) != 0 ? (ushort)0xFFFF : (ushort)0).ToArray());

    /// <summary>E2M1 code magnitude for q = 2 * (exponent - scale exponent + 2) + top mantissa bit: 0.5 -> q 2, 1 -> 4, 1.5 -> 5, ..., 6 -> 9.</summary>
    static readonly Vector512<ushort> E2M1FromQ = Vector512.Create((ReadOnlySpan<ushort>)
        [0, 0, 1, 0, 2, 3, 4, 5, 6, 7, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);

    /// <summary>Control that puts packed byte i/2 into both bytes of word i (i &lt; 32).</summary>
    static readonly Vector512<byte> PackedBytesToWords = Vector512.Create((ReadOnlySpan<byte>)Enumerable.Range(0, 64).Select(k => (byte)(k / 4)).ToArray());

    /// <summary>Word shifts that bring the low nibble (even words) or the high nibble (odd words) to the bottom.</summary>
    static readonly Vector512<ushort> NibbleShifts = Vector512.Create((ReadOnlySpan<ushort>)Enumerable.Range(0, 32).Select(k => (ushort)(k % 2 * 4)).ToArray());

    static ushort Bf16Bits(float f) => (ushort)(BitConverter.SingleToUInt32Bits(f) >> 16); // exact for these values

    /// <summary>All ones in lanes 1..31: lane 0 of a scaled <see cref="E4M3Subnormals"/> table stays zero.</summary>
    static readonly Vector512<ushort> NotLane0 = Vector512.Create((ReadOnlySpan<ushort>)Enumerable.Range(0, 32).Select(k => k == 0 ? (ushort)0 : (ushort)0xFFFF).ToArray());

    /// <summary>
    /// FP8 codes of rows [<paramref name="r0"/>, <paramref name="r1"/>) (columns and block columns multiples of 32), each
    /// checked by decoding it again; false when one does not decode to its input.
    /// </summary>
    static unsafe bool Fp8Rows512(ushort* input, int cols, int r0, int r1, byte* scales, int gc, BlockSize block, byte* codes)
    {
        Vector512<ushort> bad = Vector512<ushort>.Zero, maxEm = Vector512<ushort>.Zero;
        Vector512<ushort> absMask = Vector512.Create((ushort)0x7FFF), low7 = Vector512.Create((ushort)0x7F), lead = Vector512.Create((ushort)0x80);
        Vector512<ushort> eight = Vector512.Create((ushort)8), signMask = Vector512.Create((ushort)0x8000);
        Vector512<ushort> subnormals = E4M3Subnormals, notLane0 = NotLane0;
        for (int r = r0; r < r1; r++)
        {
            ushort* u = input + (long)r * cols;
            byte* o = codes + (long)r * cols;
            byte* srow = scales + (long)(r / block.Rows) * gc;
            for (int bc = 0, j = 0; bc < gc; bc++)
            {
                int s = srow[bc], end = Math.Min(cols, j + block.Cols);
                // Encoder constants. E4M3 exponent field + 3 = BF16 exponent - (s - 10): below 4 (BF16 exponent below
                // s - 6) the value is subnormal, k * 2^-9 with k = (1.mantissa) >> (8 - that), i.e. >> ((s - 2) - exponent);
                // above, (magnitude >> 4) - ((s - 7) << 3) is the normal code.
                var subBelow = Vector512.Create((ushort)(s - 6));
                var subShift = Vector512.Create((ushort)(s - 2));
                var normalOff = Vector512.Create((ushort)((s - 7) << 3));
                // Decoder constants: the scale 2^(s - 127) added to BF16 exponent fields. A normal code's e, m make
                // 2^(e - 7) * (1 + m/8), exponent field e + 120, mantissa m << 4: (code << 4) + (120 << 7); subnormals
                // (and zero, kept zero) come from the table.
                var kd = (ushort)((s - 127) << 7);
                var normalBase = Vector512.Create((ushort)((120 << 7) + kd));
                var sub = (subnormals + Vector512.Create(kd)) & notLane0;
                for (; j < end; j += 32)
                {
                    Vector512<ushort> x = Vector512.Load(u + j);
                    // Encode: candidate codes; lanes without an exact code get some code that the check below refuses
                    // (the saturating subtraction makes zero code 0).
                    Vector512<ushort> mag = x & absMask, exp = mag >> 7;
                    Vector512<ushort> code = Vector512.ConditionalSelect(Vector512.LessThan(exp, subBelow),
                        Avx512BW.ShiftRightLogicalVariable((mag & low7) | lead, subShift - exp), Avx512BW.SubtractSaturate(mag >> 4, normalOff));
                    Vector256<byte> c = Avx512BW.ConvertToVector256Byte(code | ((x >> 8) & lead));
                    c.Store(o + j);
                    // Check: decode the stored bytes and compare with the input; NaN codes (0x7F, 0xFF) are found by the maximum.
                    Vector512<ushort> cw = Avx512BW.ConvertToVector512UInt16(c), em = cw & low7;
                    Vector512<ushort> value = Vector512.ConditionalSelect(Vector512.LessThan(em, eight), Avx512BW.PermuteVar32x16(sub, em), (em << 4) + normalBase)
                        | ((cw << 8) & signMask);
                    bad |= value ^ x;
                    maxEm = Vector512.Max(maxEm, em);
                }
            }
        }
        return bad == Vector512<ushort>.Zero && !Vector512.EqualsAny(maxEm, low7);
    }

    /// <summary>
    /// Packed FP4 codes of rows [<paramref name="r0"/>, <paramref name="r1"/>) (group size a multiple of 32), each
    /// checked by decoding it again; false when one does not decode to its input.
    /// </summary>
    static unsafe bool Fp4Rows512(ushort* input, int cols, int r0, int r1, byte* scales, int groupSize, byte* packed)
    {
        var bad = Vector512<ushort>.Zero;
        Vector512<ushort> values0 = E2M1Values, nonZero = E2M1NonZero;
        int groups = cols / groupSize;
        long g0 = (long)r0 * groups, g1 = (long)r1 * groups;
        // Pointers advance with the loop (no index arithmetic per step; groups of 32 are one step each).
        ushort* u = input + g0 * groupSize;
        byte* o = packed + g0 * groupSize / 2;
        for (long g = g0; g < g1; g++)
        {
            int s = scales[g];
            var kq = Vector512.Create((ushort)((s - 2) << 1));
            // The group's 16 outputs: each non-zero E2M1 value at 2^0 with the scale added to its exponent field.
            Vector512<ushort> values = values0 + (nonZero & Vector512.Create((ushort)((s - 127) << 7)));
            for (int j = 0; j < groupSize; j += 32, u += 32, o += 16)
            {
                Vector512<ushort> x = Vector512.Load(u);
                Vector512<uint> p = Fp4Encode(x, kq).AsUInt32();
                // Lane pair (even, odd) -> one byte, low nibble even: codes are clean nibbles, so the truncating narrow keeps lo | hi << 4.
                Vector128<byte> b = Avx512F.ConvertToVector128Byte(p | (p >> 12));
                b.Store(o);
                bad |= Fp4Mismatch(b, x, values);
            }
        }
        return bad == Vector512<ushort>.Zero;
    }

    /// <summary>Candidate E2M1 codes (0..15 per lane; lanes without an exact code get some code the check refuses).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static Vector512<ushort> Fp4Encode(Vector512<ushort> x, Vector512<ushort> kq)
    {
        Vector512<ushort> q = Avx512BW.SubtractSaturate((x & Vector512.Create((ushort)0x7FFF)) >> 6, kq);
        // The permute reads the low 5 bits of q only: out-of-range values alias to some code, which the check refuses.
        return Avx512BW.PermuteVar32x16(E2M1FromQ, q) | ((x >> 12) & Vector512.Create((ushort)8));
    }

    /// <summary>Non-zero lanes where the 32 nibbles of <paramref name="packed"/> do not dequantize to <paramref name="x"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static Vector512<ushort> Fp4Mismatch(Vector128<byte> packed, Vector512<ushort> x, Vector512<ushort> values)
    {
        Vector512<ushort> w = Avx512Vbmi.PermuteVar64x8(packed.ToVector256Unsafe().ToVector512Unsafe(), PackedBytesToWords).AsUInt16();
        Vector512<ushort> nibble = Avx512BW.ShiftRightLogicalVariable(w, NibbleShifts) & Vector512.Create((ushort)0xF);
        return Avx512BW.PermuteVar32x16(values, nibble) ^ x;
    }
}
