using System.Text.Json.Nodes;
using Microsoft.Win32.SafeHandles;
using Mtp.Quant;
using Mtp.SafeTensors;
using Mtp.SafeTensors.IO;

namespace Mtp.Adapters;

/// <summary>
/// Positioned reads of one checkpoint's tensors for <see cref="Verifier"/>: files advised for sequential reading, every
/// range dropped from the page cache once read (drop-behind), and the holes of sparse files found without reading them.
/// Memory stays at the callers' chunk buffers whatever the checkpoint's size.
/// </summary>
sealed class TensorReader : IDisposable
{
    readonly Dictionary<string, SafeFileHandle> _handles = new(StringComparer.Ordinal);
    readonly bool _dropBehind;

    /// <param name="dropBehind">Drop every range read from the page cache (false: leave the cache as it is).</param>
    public TensorReader(bool dropBehind = true) => _dropBehind = dropBehind;

    /// <summary>Bytes read so far.</summary>
    public long BytesRead { get; private set; }

    SafeFileHandle Handle(SafeTensorsFile f)
    {
        if (_handles.TryGetValue(f.Path, out var h)) return h;
        h = File.OpenHandle(f.Path, FileMode.Open, FileAccess.Read, FileShare.Read);
        PageCache.Sequential(h);
        _handles[f.Path] = h;
        return h;
    }

    /// <summary>Reads bytes [<paramref name="offset"/>, offset + dest.Length) of <paramref name="t"/>'s data, then drops them from the cache.</summary>
    public void Read(TensorLocation t, long offset, Span<byte> dest)
    {
        SafeFileHandle h = Handle(t.File);
        long at = t.File.AbsoluteOffset(t.Info) + offset;
        for (int done = 0; done < dest.Length;)
        {
            int n = RandomAccess.Read(h, dest[done..], at + done);
            if (n <= 0) throw new SafeTensorsException(SafeTensorsError.Io, t.File.Path, t.Name, $"file ended while reading tensor '{t.Name}'");
            done += n;
        }
        if (_dropBehind) PageCache.Drop(h, at, dest.Length);
        BytesRead += dest.Length;
    }

    /// <summary>The first offset at or after <paramref name="offset"/> in <paramref name="t"/>'s data that may hold data (the tensor's length when only a hole follows).</summary>
    public long NextData(TensorLocation t, long offset)
    {
        long start = t.File.AbsoluteOffset(t.Info);
        long next = SparseFiles.NextData(Handle(t.File), start + offset, t.File.FileLength) - start;
        return Math.Clamp(next, offset, t.Info.ByteLength);
    }

    /// <summary>The first offset at or after <paramref name="offset"/> in <paramref name="t"/>'s data where a hole starts (the tensor's length when none does, or when that cannot be known).</summary>
    public long NextHole(TensorLocation t, long offset)
    {
        long start = t.File.AbsoluteOffset(t.Info);
        long next = SparseFiles.NextHole(Handle(t.File), start + offset, t.File.FileLength) - start;
        return Math.Clamp(next, offset, t.Info.ByteLength);
    }

    public void Dispose()
    {
        foreach (var h in _handles.Values) h.Dispose();
        _handles.Clear();
    }
}

/// <summary>Chunk-by-chunk comparison of two tensors with bounded memory (see <see cref="Verifier"/>).</summary>
static class ChunkCompare
{
    /// <summary>Bytes compared per read.</summary>
    public const int ChunkBytes = 8 << 20;
    /// <summary>Largest scale tensor loaded whole to dequantize a differing weight (beyond it the difference is reported without a value).</summary>
    const long MaxScaleBytes = 256L << 20;

    /// <summary>Offset of the first differing byte, or -1. A range that is a hole in both files is equal without being read.</summary>
    public static long FirstDifference(TensorReader ra, TensorLocation a, TensorReader rb, TensorLocation b, byte[] bufA, byte[] bufB, CancellationToken cancel)
    {
        long len = a.Info.ByteLength;
        for (long off = 0; off < len;)
        {
            cancel.ThrowIfCancellationRequested();
            long skip = Math.Min(ra.NextData(a, off), rb.NextData(b, off));
            if (skip > off) { off = skip; continue; } // zeros on both sides up to there
            long dataEnd = Math.Max(ra.NextHole(a, off), rb.NextHole(b, off)); // beyond it both are holes again
            int n = (int)Math.Min(Math.Min(bufA.Length, bufB.Length), dataEnd - off);
            ra.Read(a, off, bufA.AsSpan(0, n));
            rb.Read(b, off, bufB.AsSpan(0, n));
            int same = bufA.AsSpan(0, n).CommonPrefixLength(bufB.AsSpan(0, n));
            if (same < n) return off + same;
            off += n;
        }
        return -1;
    }

    // How one side is turned into values: dequantized with its scale, or raw.
    sealed record Side(TensorReader Reader, TensorLocation T, byte[]? Scales, ScaleFormat Format, BlockSize Block, bool Fp4, int Group);

    static Side? Dequantizable(Checkpoint c, TensorReader r, TensorLocation t, string? scaleName)
    {
        if (scaleName is null || t.Info.Shape.Length != 2 || t.Info.DType is not (DType.F8_E4M3 or DType.I8)) return null;
        TensorLocation s = c.Get(scaleName);
        if (s.Info.Shape.Length != 2 || s.Info.ByteLength > MaxScaleBytes || s.Info.Shape[0] <= 0 || s.Info.Shape[1] <= 0) return null;
        var bytes = new byte[s.Info.ByteLength];
        for (long off = 0; off < bytes.Length; off += ChunkBytes)
            r.Read(s, off, bytes.AsSpan((int)off, (int)Math.Min(ChunkBytes, bytes.Length - off)));
        int rows = (int)t.Info.Shape[0];
        if (t.Info.DType == DType.F8_E4M3)
        {
            int cols = (int)t.Info.Shape[1];
            var sf = s.Info.DType switch { DType.F32 => ScaleFormat.F32, DType.BF16 => ScaleFormat.BF16, _ => ScaleFormat.E8M0 };
            var block = new BlockSize((int)Math.Ceiling(rows / (double)s.Info.Shape[0]), (int)Math.Ceiling(cols / (double)s.Info.Shape[1]));
            JsonObject config = c.Config ?? new JsonObject();
            BlockSize cfg = TensorBlocks.Of(FamilyRegistry.SchemeOf(config), ConfigValues.TextConfig(config), t.Name, rows, cols, Converter.BlockOf(config), s.Info.Shape);
            if (cfg.GridFor(rows, cols) == ((int)s.Info.Shape[0], (int)s.Info.Shape[1])) block = cfg;
            return new Side(r, t, bytes, sf, block, false, 0);
        }
        int logicalCols = (int)t.Info.Shape[1] * 2;
        if (logicalCols % s.Info.Shape[1] != 0 || s.Info.Shape[0] != rows) return null;
        return new Side(r, t, bytes, ScaleFormat.E8M0, default, true, logicalCols / (int)s.Info.Shape[1]);
    }

    /// <summary>
    /// First differing element and largest absolute difference of two differing tensors of the same dtype and shape,
    /// after dequantization when both are quantized weights with their scales (each with its own), else of the raw
    /// values; streamed in row chunks. <paramref name="firstByte"/> gives the element when the values are all equal.
    /// </summary>
    public static (long First, double Max) Difference(Checkpoint ca, TensorReader ra, TensorLocation a, string? scaleA,
        Checkpoint cb, TensorReader rb, TensorLocation b, string? scaleB, long firstByte, CancellationToken cancel)
    {
        long byteElement = firstByte * 8 / Math.Max(1, a.Info.DType.Bits());
        Side? qa = Dequantizable(ca, ra, a, scaleA), qb = Dequantizable(cb, rb, b, scaleB);
        if ((qa is null) != (qb is null)) return (byteElement, double.NaN); // one dequantized, one raw: not comparable
        var st = new Stats();
        try
        {
            if (qa is not null) Dequantized(qa, qb!, st, cancel);
            else if (!Raw(ra, a, rb, b, st, cancel)) return (byteElement, double.NaN);
        }
        catch (Exception e) when (qa is not null && e is ArgumentException or InvalidDataException)
        {
            st = new Stats();
            if (!Raw(ra, a, rb, b, st, cancel)) return (byteElement, double.NaN); // as before: fall back to raw values
        }
        return (st.First >= 0 ? st.First : byteElement, st.Max);
    }

    sealed class Stats
    {
        public long First = -1;
        public double Max;

        public void Add(ReadOnlySpan<float> x, ReadOnlySpan<float> y, long baseIndex)
        {
            for (int i = 0; i < x.Length; i++)
            {
                float u = x[i], v = y[i];
                if (First < 0 && !u.Equals(v)) First = baseIndex + i;
                double d = Math.Abs((double)u - v);
                if (double.IsNaN(d)) { if (!(float.IsNaN(u) && float.IsNaN(v))) Max = double.PositiveInfinity; }
                else if (d > Max) Max = d;
            }
        }
    }

    static void Dequantized(Side a, Side b, Stats st, CancellationToken cancel)
    {
        int rows = (int)a.T.Info.Shape[0], stored = (int)a.T.Info.Shape[1], cols = a.Fp4 ? stored * 2 : stored;
        int align = a.Fp4 ? 1 : Lcm(Unit(a.Block), Unit(b.Block));
        int rowsPer = Math.Max(align, ChunkBytes / Math.Max(1, cols * 4) / align * align);
        var codesA = new byte[(long)rowsPer * stored];
        var codesB = new byte[codesA.Length];
        var outA = new byte[(long)rowsPer * cols * 4];
        var outB = new byte[outA.Length];
        var opts = new KernelOptions { AllowNonFiniteScales = true };
        for (int r0 = 0; r0 < rows; r0 += rowsPer)
        {
            cancel.ThrowIfCancellationRequested();
            int n = Math.Min(rowsPer, rows - r0);
            foreach (var (side, codes, output) in new[] { (a, codesA, outA), (b, codesB, outB) })
            {
                side.Reader.Read(side.T, (long)r0 * stored, codes.AsSpan(0, n * stored));
                if (side.Fp4)
                {
                    int g = cols / side.Group;
                    BlockDequant.Fp4(codes.AsSpan(0, n * stored), n, cols, side.Scales.AsSpan(r0 * g, n * g), side.Group, output.AsSpan(0, n * cols * 4), FloatFormat.F32, opts);
                }
                else
                {
                    int gc = (cols + side.Block.Cols - 1) / side.Block.Cols, sb = BlockDequant.BytesPerScale(side.Format);
                    int g0 = side.Block.GridFor(r0, cols).Rows, g1 = g0 + side.Block.GridFor(n, cols).Rows; // r0 starts a block row (or chunk)
                    RowChunkedBlocks.Dequantize(codes.AsSpan(0, n * stored), n, cols, side.Scales.AsSpan(g0 * gc * sb, (g1 - g0) * gc * sb), side.Format, side.Block,
                        output.AsSpan(0, n * cols * 4), FloatFormat.F32, opts);
                }
            }
            st.Add(System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(outA.AsSpan(0, n * cols * 4)),
                System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(outB.AsSpan(0, n * cols * 4)), (long)r0 * cols);
        }
    }

    // Rows after which a grid starts a scale row afresh.
    static int Unit(BlockSize b) => b.RowChunk > 0 ? b.RowChunk : b.Rows;

    static int Lcm(int x, int y)
    {
        int g = x, h = y;
        while (h != 0) (g, h) = (h, g % h);
        return x / Math.Max(1, g) * y;
    }

    // Raw values element by element; false for a dtype without numeric values (the difference is then reported without one).
    static bool Raw(TensorReader ra, TensorLocation a, TensorReader rb, TensorLocation b, Stats st, CancellationToken cancel)
    {
        DType t = a.Info.DType;
        int size = t.Bits() / 8;
        if (size <= 0 || !Numeric(t)) return false;
        long len = a.Info.ByteLength;
        int chunk = ChunkBytes / size * size;
        var bufA = new byte[(int)Math.Min(chunk, len)];
        var bufB = new byte[bufA.Length];
        var fa = new float[bufA.Length / size];
        var fb = new float[fa.Length];
        for (long off = 0; off < len;)
        {
            cancel.ThrowIfCancellationRequested();
            long skip = Math.Min(ra.NextData(a, off), rb.NextData(b, off)) / size * size;
            if (skip > off) { off = skip; continue; } // zeros on both sides: equal, no difference to add
            long dataEnd = Math.Max(ra.NextHole(a, off), rb.NextHole(b, off));
            int n = (int)Math.Min(chunk, Math.Max(size, (dataEnd - off + size - 1) / size * size));
            n = (int)Math.Min(n, len - off);
            ra.Read(a, off, bufA.AsSpan(0, n));
            rb.Read(b, off, bufB.AsSpan(0, n));
            int count = n / size;
            ToFloats(t, bufA.AsSpan(0, n), fa);
            ToFloats(t, bufB.AsSpan(0, n), fb);
            st.Add(fa.AsSpan(0, count), fb.AsSpan(0, count), off / size);
            off += n;
        }
        return true;
    }

    static bool Numeric(DType t) => t is DType.F32 or DType.BF16 or DType.F16 or DType.F8_E4M3 or DType.F8_E8M0 or DType.I8 or DType.U8 or DType.BOOL or DType.I32 or DType.I64;

    static void ToFloats(DType t, ReadOnlySpan<byte> s, Span<float> o)
    {
        int size = t.Bits() / 8;
        for (int i = 0; i < s.Length / size; i++)
            o[i] = t switch
            {
                DType.F32 => BitConverter.ToSingle(s.Slice(i * 4, 4)),
                DType.BF16 => BFloat16.ToFloat(BitConverter.ToUInt16(s.Slice(i * 2, 2))),
                DType.F16 => (float)BitConverter.ToHalf(s.Slice(i * 2, 2)),
                DType.F8_E4M3 => Fp8E4M3.ToFloat(s[i]),
                DType.F8_E8M0 => E8M0.ToFloat(s[i]),
                DType.I8 => (sbyte)s[i],
                DType.U8 or DType.BOOL => s[i],
                DType.I32 => BitConverter.ToInt32(s.Slice(i * 4, 4)),
                DType.I64 => BitConverter.ToInt64(s.Slice(i * 8, 8)),
                _ => float.NaN,
            };
    }
}
