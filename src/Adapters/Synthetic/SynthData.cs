using System.Buffers.Binary;
using System.Collections.Concurrent;

namespace Mtp.Adapters.Synthetic;

/// <summary>SplitMix64: a tiny, fast, counter-based PRNG (so a stream can be skipped ahead in O(1)).</summary>
public struct SplitMix64
{
    const ulong Golden = 0x9E3779B97F4A7C15UL;
    ulong _state;

    /// <summary>Starts a stream at <paramref name="seed"/>.</summary>
    public SplitMix64(ulong seed) => _state = seed;

    /// <summary>The state to resume from: <c>new SplitMix64(State)</c> draws what this stream draws next.</summary>
    public readonly ulong State => _state;

    /// <summary>The next 64 random bits.</summary>
    public ulong Next() => Mix(_state += Golden);

    /// <summary>Skips <paramref name="n"/> outputs.</summary>
    public void Skip(long n) => _state += Golden * (ulong)n;

    /// <summary>The SplitMix64 finaliser (a good 64-bit hash of <paramref name="z"/>).</summary>
    public static ulong Mix(ulong z)
    {
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }
}

/// <summary>
/// Deterministic synthetic tensor bytes. A tensor's byte stream is cut into 1 MiB chunks, each with
/// its own PRNG stream seeded from (run seed, tensor name, chunk index), so any byte range can be
/// generated independently (in parallel, in any batch layout) and the output depends only on the seed.
/// All arithmetic is integer or basic IEEE float operations: identical on every platform.
/// </summary>
public static class SynthData
{
    /// <summary>Bytes per independently seeded chunk.</summary>
    public const int ChunkBytes = 1 << 20;

    // 65536 samples of a standard normal (Irwin-Hall with 12 uniforms), indexed by 16 random bits.
    static readonly float[] Normal = BuildNormal();
    // 256 E4M3 codes at the quantiles (i + 0.5) / 256 of normal * 100, clamped to +-448: indexed by one
    // random byte, they give codes distributed like block-quantized weights (amax ~ 448 per block).
    static readonly byte[] Fp8Codes = BuildFp8();
    static readonly ConcurrentDictionary<(double, double), ushort[]> Bf16Tables = new();

    /// <summary>The seed of one tensor's stream: a hash of the run seed and the tensor name.</summary>
    public static ulong TensorSeed(ulong seed, string name)
    {
        ulong h = 0xCBF29CE484222325UL; // FNV-1a 64
        foreach (char c in name) { h ^= c; h *= 0x100000001B3UL; }
        return SplitMix64.Mix(h ^ SplitMix64.Mix(seed + 0x632BE59BD9B4E019UL));
    }

    /// <summary>
    /// Fills <paramref name="dest"/> with bytes [<paramref name="offset"/>, offset + dest.Length) of
    /// <paramref name="tensor"/>'s data. <paramref name="offset"/> must be a multiple of 8.
    /// </summary>
    public static void Fill(SynthTensor tensor, ulong tensorSeed, long offset, Span<byte> dest)
    {
        if (offset % 8 != 0) throw new ArgumentException("offset must be a multiple of 8", nameof(offset));
        while (!dest.IsEmpty)
        {
            long chunk = offset / ChunkBytes;
            int inChunk = (int)(offset % ChunkBytes);
            int n = Math.Min(dest.Length, ChunkBytes - inChunk);
            var rng = new SplitMix64(SplitMix64.Mix(tensorSeed + (ulong)chunk * 0xD1B54A32D192ED03UL));
            rng.Skip(inChunk / 8); // every fill draws one PRNG output per 8-byte word
            FillWords(tensor, ref rng, dest[..n]);
            dest = dest[n..];
            offset += n;
        }
    }

    static void FillWords(SynthTensor t, ref SplitMix64 rng, Span<byte> dest)
    {
        if (t.Fill is SynthFill.Fp8 or SynthFill.Fp4 or SynthFill.ScaleE8M0 or SynthFill.ScaleF32 or SynthFill.ScaleBf16 or SynthFill.ScaleF32PowerOfTwo) FillQuantized(t, ref rng, dest);
        else FillValues(t, ref rng, dest);
    }

    /// <summary>Quantized codes and their scales.</summary>
    static void FillQuantized(SynthTensor t, ref SplitMix64 rng, Span<byte> dest)
    {
        int words = dest.Length / 8;
        Span<byte> tail = stackalloc byte[8];
        switch (t.Fill)
        {
            case SynthFill.Fp8:
            {
                byte[] tab = Fp8Codes;
                for (int w = 0; w <= words; w++)
                {
                    ulong a = rng.Next();
                    ulong v = tab[(int)(a & 0xFF)] | (ulong)tab[(int)((a >> 8) & 0xFF)] << 8
                            | (ulong)tab[(int)((a >> 16) & 0xFF)] << 16 | (ulong)tab[(int)((a >> 24) & 0xFF)] << 24
                            | (ulong)tab[(int)((a >> 32) & 0xFF)] << 32 | (ulong)tab[(int)((a >> 40) & 0xFF)] << 40
                            | (ulong)tab[(int)((a >> 48) & 0xFF)] << 48 | (ulong)tab[(int)(a >> 56)] << 56;
                    Put(dest, w, words, v, tail);
                }
                break;
            }
            case SynthFill.Fp4:
                for (int w = 0; w <= words; w++) Put(dest, w, words, rng.Next(), tail);
                break;
            case SynthFill.ScaleE8M0:
                for (int w = 0; w <= words; w++)
                {
                    // each byte 110 + (0..15): 2^-17 .. 2^-2, never 0xFF (NaN)
                    ulong v = (rng.Next() & 0x0F0F0F0F0F0F0F0FUL) + 0x6E6E6E6E6E6E6E6EUL;
                    Put(dest, w, words, v, tail);
                }
                break;
            case SynthFill.ScaleF32PowerOfTwo:
                for (int w = 0; w <= words; w++)
                {
                    // two F32 per word, exponents 110 + (0..15) with empty mantissas: the E8M0 fill's values
                    ulong r = rng.Next();
                    ulong v = (ulong)(110 + (r & 15)) << 23 | (ulong)(110 + ((r >> 4) & 15)) << 55;
                    Put(dest, w, words, v, tail);
                }
                break;
            case SynthFill.ScaleF32:
            case SynthFill.ScaleBf16:
            {
                bool bf = t.Fill == SynthFill.ScaleBf16;
                for (int w = 0; w <= words; w++)
                {
                    ulong r = rng.Next();
                    ulong v = bf
                        ? Bf16Scale((uint)r) | (ulong)Bf16Scale((uint)(r >> 16)) << 16 | (ulong)Bf16Scale((uint)(r >> 32)) << 32 | (ulong)Bf16Scale((uint)(r >> 48)) << 48
                        : ScaleBits((uint)r) | (ulong)ScaleBits((uint)(r >> 32)) << 32;
                    Put(dest, w, words, v, tail);
                }
                break;
            }
            default:
                throw new ArgumentOutOfRangeException(nameof(t), t.Fill, "unknown fill");
        }
    }

    /// <summary>Plain values: BF16 / F32 normals and expert ids.</summary>
    static void FillValues(SynthTensor t, ref SplitMix64 rng, Span<byte> dest)
    {
        int words = dest.Length / 8;
        Span<byte> tail = stackalloc byte[8];
        switch (t.Fill)
        {
            case SynthFill.Bf16:
            {
                ushort[] tab = Bf16Table(t.Mean, t.Std);
                for (int w = 0; w <= words; w++)
                {
                    ulong a = rng.Next();
                    ulong v = tab[(int)(a & 0xFFFF)] | (ulong)tab[(int)((a >> 16) & 0xFFFF)] << 16
                            | (ulong)tab[(int)((a >> 32) & 0xFFFF)] << 32 | (ulong)tab[(int)(a >> 48)] << 48;
                    Put(dest, w, words, v, tail);
                }
                break;
            }
            case SynthFill.F32:
            {
                float mean = (float)t.Mean, std = (float)t.Std;
                for (int w = 0; w <= words; w++)
                {
                    ulong a = rng.Next();
                    uint lo = BitConverter.SingleToUInt32Bits(mean + std * Normal[(int)(a & 0xFFFF)]);
                    uint hi = BitConverter.SingleToUInt32Bits(mean + std * Normal[(int)((a >> 16) & 0xFFFF)]);
                    Put(dest, w, words, lo | (ulong)hi << 32, tail);
                }
                break;
            }
            case SynthFill.ExpertIds:
            {
                ulong e = (ulong)t.Max;
                for (int w = 0; w <= words; w++)
                {
                    ulong a = rng.Next();
                    ulong lo = ((a & 0xFFFFFFFF) * e) >> 32, hi = ((a >> 32) * e) >> 32;
                    Put(dest, w, words, lo | hi << 32, tail);
                }
                break;
            }
            case SynthFill.ExpertIds64:
            {
                ulong e = (ulong)t.Max;
                for (int w = 0; w <= words; w++) Put(dest, w, words, ((rng.Next() & 0xFFFFFFFF) * e) >> 32, tail);
                break;
            }
            default:
                throw new ArgumentOutOfRangeException(nameof(t), t.Fill, "unknown fill");
        }
    }

    // Word w of dest; w == words is the partial tail (possibly empty).
    static void Put(Span<byte> dest, int w, int words, ulong v, Span<byte> tail)
    {
        if (w < words) { BinaryPrimitives.WriteUInt64LittleEndian(dest.Slice(w * 8, 8), v); return; }
        int rest = dest.Length - words * 8;
        if (rest == 0) return;
        BinaryPrimitives.WriteUInt64LittleEndian(tail, v);
        tail[..rest].CopyTo(dest[(words * 8)..]);
    }

    // A positive F32 in [2^-17, 2^-9) (about 7.6e-6 .. 2e-3): amax/448 of realistic weights.
    static uint ScaleBits(uint r) => ((uint)(127 - 17 + (int)((r >> 23) % 8)) << 23) | (r & 0x7FFFFF);

    // The same range in BF16 from 16 random bits: 3 exponent bits, 7 mantissa bits.
    static ulong Bf16Scale(uint r) => (ulong)(((127 - 17 + ((r >> 7) & 7)) << 7) | (r & 0x7F));

    static float[] BuildNormal()
    {
        var rng = new SplitMix64(0x5EED);
        var t = new float[65536];
        for (int i = 0; i < t.Length; i++)
        {
            double s = 0;
            for (int k = 0; k < 12; k++) s += (rng.Next() >> 11) * (1.0 / (1UL << 53));
            t[i] = (float)(s - 6.0);
        }
        return t;
    }

    static ushort[] Bf16Table(double mean, double std) => Bf16Tables.GetOrAdd((mean, std), k =>
    {
        var t = new ushort[65536];
        for (int i = 0; i < t.Length; i++) t[i] = Mtp.Quant.BFloat16.FromFloat((float)(k.Item1 + k.Item2 * Normal[i]));
        return t;
    });

    static byte[] BuildFp8()
    {
        var values = new float[127];
        for (int c = 0; c < 127; c++) values[c] = Mtp.Quant.Fp8E4M3.ToFloat((byte)c);
        float[] sorted = (float[])Normal.Clone();
        Array.Sort(sorted);
        var t = new byte[256];
        for (int i = 0; i < t.Length; i++)
        {
            float x = sorted[i * 256 + 128] * 100f;
            float a = Math.Min(MathF.Abs(x), 448f);
            int best = 0;
            for (int c = 1; c < 127; c++)
                if (MathF.Abs(values[c] - a) < MathF.Abs(values[best] - a)) best = c;
            t[i] = (byte)(best | (x < 0 ? 0x80 : 0));
        }
        return t;
    }
}
