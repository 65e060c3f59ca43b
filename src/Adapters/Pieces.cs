using System.Collections.Concurrent;
using Mtp.Quant;
using Mtp.SafeTensors;

namespace Mtp.Adapters;

/// <summary>A byte range of a stored tensor (read through the memory map).</summary>
internal readonly record struct Src(SafeTensorsFile File, TensorInfo Info, long Offset, long Length)
{
    public static Src Whole(TensorLocation l) => new(l.File, l.Info, 0, l.Info.ByteLength);
    public ReadOnlySpan<byte> Span(long off, int len) => File.GetData(Info).Slice(Offset + off, len);
    public ReadOnlySpan<byte> All => Span(0, checked((int)Length));
    public string Name => Info.Name;
}

/// <summary>A contiguous part of one output tensor: computed into a buffer, or copied straight from the map.</summary>
internal abstract class Piece
{
    public abstract long Bytes { get; }
    /// <summary>Bytes to copy verbatim, when the piece is a plain copy.</summary>
    public virtual Src? Direct => null;
    public abstract void Produce(Span<byte> dest, KernelOptions k);
    /// <summary>The large source ranges this piece reads (prefetched before, released from the mapping after).</summary>
    public virtual IEnumerable<Src> Inputs => Array.Empty<Src>();
    /// <summary>The source ranges this piece read (after <see cref="Produce"/>): its inputs, plus any it had to read on demand.</summary>
    public virtual IEnumerable<Src> Consumed => Inputs;
    /// <summary>
    /// Row-block sub-pieces of at most about <paramref name="maxBytes"/> output bytes whose outputs, concatenated, are this
    /// piece's output: memory then does not scale with the largest tensor. Pieces that cannot be split return themselves.
    /// </summary>
    public virtual IEnumerable<Piece> Split(long maxBytes) { yield return this; }
}

internal sealed class CopyPiece(Src src) : Piece
{
    public override long Bytes => src.Length;
    public override Src? Direct => src;
    public override void Produce(Span<byte> dest, KernelOptions k) => src.All.CopyTo(dest);
    public override IEnumerable<Src> Inputs => new[] { src };
}

/// <summary>Elementwise BF16 &lt;-&gt; F32 (round to nearest even on narrowing).</summary>
internal sealed class CastPiece(Src src, DType from, DType to) : Piece
{
    public override long Bytes => src.Length / Elem(from) * Elem(to);
    static int Elem(DType d) => d == DType.F32 ? 4 : 2;
    public override IEnumerable<Src> Inputs => new[] { src };
    public override IEnumerable<Piece> Split(long maxBytes)
    {
        if (Bytes <= maxBytes || from == to) { yield return this; yield break; }
        long per = Math.Max(1, maxBytes / Elem(to)) * Elem(from);
        for (long off = 0; off < src.Length; off += per)
            yield return new CastPiece(src with { Offset = src.Offset + off, Length = Math.Min(per, src.Length - off) }, from, to);
    }
    public override void Produce(Span<byte> dest, KernelOptions k)
    {
        ReadOnlySpan<byte> s = src.All;
        int n = s.Length / Elem(from);
        if (from == DType.BF16 && to == DType.F32)
        {
            var i16 = System.Runtime.InteropServices.MemoryMarshal.Cast<byte, ushort>(s);
            var o32 = System.Runtime.InteropServices.MemoryMarshal.Cast<byte, uint>(dest);
            for (int i = 0; i < n; i++) o32[i] = (uint)i16[i] << 16;
        }
        else if (from == DType.F32 && to == DType.BF16)
        {
            var i32 = System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(s);
            var o16 = System.Runtime.InteropServices.MemoryMarshal.Cast<byte, ushort>(dest);
            for (int i = 0; i < n; i++) o16[i] = BFloat16.FromFloat(i32[i]);
        }
        else if (from == to) s.CopyTo(dest);
        else throw new AdapterException(AdapterErrorKind.Malformed, $"tensor '{src.Name}': cannot cast {from} to {to}");
    }
}

/// <summary>An FP8 weight's logical shape and scale layout.</summary>
internal readonly record struct Fp8Grid(int Rows, int Cols, ScaleFormat Sf, BlockSize Block);

internal sealed class DequantFp8Piece(Src codes, Src scale, Fp8Grid grid, DType outType, bool pow2 = false) : Piece
{
    readonly int rows = grid.Rows, cols = grid.Cols;
    readonly ScaleFormat sf = grid.Sf;
    readonly BlockSize block = grid.Block;
    public override long Bytes => (long)rows * cols * (outType == DType.F32 ? 4 : 2);
    public override IEnumerable<Src> Inputs => new[] { codes, scale };
    public override IEnumerable<Piece> Split(long maxBytes)
    {
        long rowOut = (long)cols * (outType == DType.F32 ? 4 : 2);
        // Slices start where the grid starts a scale row afresh: at a block row, or at a chunk of a row-chunked block.
        int unit = block.RowChunk > 0 ? block.RowChunk : block.Rows;
        int step = (int)Math.Max(unit, Math.Min(rows, maxBytes / Math.Max(1, rowOut)) / unit * unit);
        if (step >= rows) { yield return this; yield break; }
        int gc = block.GridFor(rows, cols).Cols;
        int se = sf switch { ScaleFormat.F32 => 4, ScaleFormat.BF16 => 2, _ => 1 };
        for (int r0 = 0; r0 < rows; r0 += step)
        {
            int rc = Math.Min(step, rows - r0);
            long sOff = (long)block.GridFor(r0, cols).Rows * gc * se, sLen = (long)block.GridFor(rc, cols).Rows * gc * se;
            yield return new DequantFp8Piece(codes with { Offset = codes.Offset + (long)r0 * cols, Length = (long)rc * cols },
                scale with { Offset = scale.Offset + sOff, Length = sLen }, grid with { Rows = rc }, outType, pow2);
        }
    }
    public override void Produce(Span<byte> dest, KernelOptions k)
    {
        if (pow2 && sf == ScaleFormat.F32) PowerOfTwoScales.Check(scale);
        try { RowChunkedBlocks.Dequantize(codes.All, rows, cols, scale.All, sf, block, dest, outType == DType.F32 ? FloatFormat.F32 : FloatFormat.BF16, k); }
        catch (InvalidDataException e) { throw PieceErrors.Malformed(scale, e.Message, e); }
        catch (ArgumentException e) { throw PieceErrors.Malformed(codes, e.Message, e); }
        PieceErrors.CheckFinite(codes, dest, outType, "FP8 E4M3 dequantization");
    }
}

internal sealed class DequantFp4Piece(Src packed, Src scale, int rows, int cols, int group, DType outType) : Piece
{
    public override long Bytes => (long)rows * cols * (outType == DType.F32 ? 4 : 2);
    public override IEnumerable<Src> Inputs => new[] { packed, scale };
    public override IEnumerable<Piece> Split(long maxBytes)
    {
        long rowOut = (long)cols * (outType == DType.F32 ? 4 : 2);
        int step = (int)Math.Max(1, Math.Min(rows, maxBytes / Math.Max(1, rowOut)));
        if (step >= rows) { yield return this; yield break; }
        long sRow = cols / group;
        for (int r0 = 0; r0 < rows; r0 += step)
        {
            int rc = Math.Min(step, rows - r0);
            yield return new DequantFp4Piece(packed with { Offset = packed.Offset + (long)r0 * cols / 2, Length = (long)rc * cols / 2 },
                scale with { Offset = scale.Offset + r0 * sRow, Length = rc * sRow }, rc, cols, group, outType);
        }
    }
    public override void Produce(Span<byte> dest, KernelOptions k)
    {
        try { BlockDequant.Fp4(packed.All, rows, cols, scale.All, group, dest, outType == DType.F32 ? FloatFormat.F32 : FloatFormat.BF16, k); }
        catch (InvalidDataException e) { throw PieceErrors.Malformed(scale, e.Message, e); }
        catch (ArgumentException e) { throw PieceErrors.Malformed(packed, e.Message, e); }
        PieceErrors.CheckFinite(packed, dest, outType, "FP4 dequantization");
    }
}

/// <summary>Turns kernel failures into one-line errors naming the file and tensor.</summary>
internal static class PieceErrors
{
    public static AdapterException Malformed(Src src, string detail, Exception? inner = null) =>
        new(AdapterErrorKind.Malformed, $"{src.File.Path}: tensor '{src.Name}': {detail.Replace('\n', ' ').Replace('\r', ' ')}", inner)
        {
            File = src.File.Path, Tensor = src.Name,
        };

    /// <summary>Throws when a dequantized tensor holds NaN or infinite values (E4M3 NaN codes, overflowing scales), with their count.</summary>
    public static void CheckFinite(Src src, ReadOnlySpan<byte> output, DType outType, string what)
    {
        // One vectorized scan for the common case; count and locate only when something is wrong.
        bool f32 = outType == DType.F32;
        if (!f32 && !HasNonFinite16(output) || f32 && !HasNonFinite32(output)) return;
        long bad = 0, first = -1;
        if (f32)
        {
            var f = System.Runtime.InteropServices.MemoryMarshal.Cast<byte, uint>(output);
            for (int i = 0; i < f.Length; i++)
                if ((f[i] & 0x7F800000u) == 0x7F800000u) { bad++; if (first < 0) first = i; }
        }
        else
        {
            var h = System.Runtime.InteropServices.MemoryMarshal.Cast<byte, ushort>(output);
            for (int i = 0; i < h.Length; i++)
                if ((h[i] & 0x7F80) == 0x7F80) { bad++; if (first < 0) first = i; }
        }
        throw Malformed(src, $"{bad} value(s) are NaN or infinite after {what} (first at element {first})");
    }

    /// <summary>Whether any F32 in <paramref name="bytes"/> has an all-ones exponent (NaN or infinity).</summary>
    static bool HasNonFinite32(ReadOnlySpan<byte> bytes)
    {
        var u = System.Runtime.InteropServices.MemoryMarshal.Cast<byte, uint>(bytes);
        var mask = new System.Numerics.Vector<uint>(0x7F800000u);
        int i = 0;
        for (; i + System.Numerics.Vector<uint>.Count <= u.Length; i += System.Numerics.Vector<uint>.Count)
            if (System.Numerics.Vector.EqualsAny(new System.Numerics.Vector<uint>(u[i..]) & mask, mask)) return true;
        for (; i < u.Length; i++) if ((u[i] & 0x7F800000u) == 0x7F800000u) return true;
        return false;
    }

    /// <summary>Whether any BF16 in <paramref name="bytes"/> has an all-ones exponent (NaN or infinity).</summary>
    static bool HasNonFinite16(ReadOnlySpan<byte> bytes)
    {
        var u = System.Runtime.InteropServices.MemoryMarshal.Cast<byte, ushort>(bytes);
        var mask = new System.Numerics.Vector<ushort>(0x7F80);
        int i = 0;
        for (; i + System.Numerics.Vector<ushort>.Count <= u.Length; i += System.Numerics.Vector<ushort>.Count)
            if (System.Numerics.Vector.EqualsAny(new System.Numerics.Vector<ushort>(u[i..]) & mask, mask)) return true;
        for (; i < u.Length; i++) if ((u[i] & 0x7F80) == 0x7F80) return true;
        return false;
    }
}

/// <summary>One planned output tensor: spec, provenance and the pieces that produce its bytes in order.</summary>
internal sealed class PlannedTensor
{
    public required string Name { get; init; }
    public required DType DType { get; init; }
    public required long[] Shape { get; init; }
    public List<string> Sources { get; } = new();
    public List<string> Ops { get; } = new();
    public List<Piece> Pieces { get; } = new();
    /// <summary>Sort key: position of the first source (shard index, offset).</summary>
    public (int, long) Order { get; set; }
    public TensorSpec Spec => new(Name, DType, Shape);
}
