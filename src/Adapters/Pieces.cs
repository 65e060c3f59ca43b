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
        int step = (int)Math.Max(block.Rows, Math.Min(rows, maxBytes / Math.Max(1, rowOut)) / block.Rows * block.Rows);
        if (step >= rows) { yield return this; yield break; }
        int gc = block.GridFor(rows, cols).Cols;
        int se = sf switch { ScaleFormat.F32 => 4, ScaleFormat.BF16 => 2, _ => 1 };
        for (int r0 = 0; r0 < rows; r0 += step)
        {
            int rc = Math.Min(step, rows - r0);
            long sOff = (long)(r0 / block.Rows) * gc * se, sLen = (long)((rc + block.Rows - 1) / block.Rows) * gc * se;
            yield return new DequantFp8Piece(codes with { Offset = codes.Offset + (long)r0 * cols, Length = (long)rc * cols },
                scale with { Offset = scale.Offset + sOff, Length = sLen }, grid with { Rows = rc }, outType, pow2);
        }
    }
    public override void Produce(Span<byte> dest, KernelOptions k)
    {
        if (pow2 && sf == ScaleFormat.F32) PowerOfTwoScales.Check(scale);
        try { BlockDequant.Fp8(codes.All, rows, cols, scale.All, sf, block, dest, outType == DType.F32 ? FloatFormat.F32 : FloatFormat.BF16, k); }
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

/// <summary>The HF weight + scale pair a <see cref="QuantPiece"/> produces: names, logical shape and scheme.</summary>
internal sealed record QuantTarget
{
    /// <summary>The HF weight's name.</summary>
    public required string WeightName { get; init; }
    /// <summary>Its scale tensor's name.</summary>
    public required string ScaleName { get; init; }
    /// <summary>Logical rows.</summary>
    public required int Rows { get; init; }
    /// <summary>Logical columns (FP4: two per byte).</summary>
    public required int Cols { get; init; }
    /// <summary>Packed FP4 with E8M0 group scales (else FP8 E4M3 with block scales).</summary>
    public required bool Fp4 { get; init; }
    /// <summary>How the scales are stored.</summary>
    public required ScaleFormat ScaleFormat { get; init; }
    /// <summary>FP8 block size.</summary>
    public required BlockSize Block { get; init; }
    /// <summary>FP4 columns per scale.</summary>
    public required int Group { get; init; }
    /// <summary>Bytes of the scale tensor.</summary>
    public required long ScaleBytes { get; init; }
    /// <summary>scale_fmt ue8m0: F32 scales that are powers of two.</summary>
    public bool Pow2 { get; init; }
}

/// <summary>
/// Re-quantizes a training-layout slice to FP8 or packed FP4. With a reference weight: if the reference dequantizes to
/// exactly the input, the reference codes and scale come back byte for byte; otherwise the reference scales are reused
/// (a block that would overflow gets a canonical scale). Without one: canonical scales.
/// </summary>
internal sealed class QuantPiece : Piece
{
    readonly Src _input;
    readonly FloatFormat _inFmt;
    readonly int _rows, _cols;
    readonly bool _fp4;
    readonly ScaleFormat _sf;
    readonly BlockSize _block;
    readonly int _group;
    readonly Src? _refCodes, _refScale;
    readonly ConcurrentDictionary<string, byte[]> _cache;
    // scale_fmt ue8m0 with F32 scales: quantized with E8M0 (power-of-two) scales, written as their F32 values.
    readonly bool _pow2;
    ScaleFormat Inner => _pow2 ? ScaleFormat.E8M0 : _sf;
    public string WeightName { get; }
    public string ScaleName { get; }
    public long ScaleBytes { get; }
    public int ChangedBlocks;
    public bool Unchanged;

    public QuantPiece(QuantTarget target, Src input, DType inType, (Src? Codes, Src? Scale) reference, ConcurrentDictionary<string, byte[]> cache)
    {
        _pow2 = target.Pow2 && !target.Fp4 && target.ScaleFormat == ScaleFormat.F32;
        WeightName = target.WeightName; ScaleName = target.ScaleName;
        _input = input; _inFmt = inType == DType.F32 ? FloatFormat.F32 : FloatFormat.BF16;
        _rows = target.Rows; _cols = target.Cols; _fp4 = target.Fp4; _sf = target.ScaleFormat; _block = target.Block; _group = target.Group;
        ScaleBytes = target.ScaleBytes;
        _refCodes = reference.Codes; _refScale = reference.Scale; _cache = cache;
    }

    public override long Bytes => _fp4 ? (long)_rows * _cols / 2 : (long)_rows * _cols;

    /// <summary>
    /// Whether the weight is expected to be re-encoded exactly from the reference scales alone (BF16 input, E8M0 scales:
    /// <see cref="ExactEncode"/>), so that the reference codes are not read ahead; they are read only if that fails.
    /// </summary>
    bool EncodesExactly => _refScale != null && _inFmt == FloatFormat.BF16 && (_fp4 ? _group % 32 == 0 && _cols % _group == 0
        : Inner == ScaleFormat.E8M0 && _block.Cols % 16 == 0 && _cols % 16 == 0);
    bool _readReferenceCodes;
    /// <summary>Re-encoded exactly from the reference scales alone (the reference codes were not read).</summary>
    public bool Exact { get; private set; }
    /// <summary>The reference codes had to be read (compared, and copied when equal).</summary>
    public bool ReadReferenceCodes => _readReferenceCodes;

    public override IEnumerable<Src> Inputs => _refCodes is Src rc && _refScale is Src rs
        ? (EncodesExactly ? new[] { _input, rs } : new[] { _input, rc, rs })
        : new[] { _input };
    public override IEnumerable<Src> Consumed => _readReferenceCodes && _refCodes is Src rc && EncodesExactly ? Inputs.Append(rc) : Inputs;

    /// <summary>Whether a later <see cref="ScaleOfPiece"/> of this run will take the scale from the cache (else it is not kept).</summary>
    public bool KeepScale = true;

    public override void Produce(Span<byte> dest, KernelOptions k)
    {
        var scales = new byte[ScaleBytes];
        Run(dest, scales, k);
        if (KeepScale) _cache[ScaleName] = scales;
    }

    public void Run(Span<byte> codes, Span<byte> scales, KernelOptions k)
    {
        try
        {
            if (!_pow2) { RunCore(codes, scales, _refScale is Src r ? r.All : default, k); return; }
            var e8 = new byte[scales.Length / 4];
            var refE8 = _refScale is Src rs ? PowerOfTwoScales.ToE8M0(rs) : null;
            RunCore(codes, e8, refE8, k);
            PowerOfTwoScales.ToF32(e8, scales);
        }
        catch (Exception e) when (e is ArgumentException or InvalidDataException)
        {
            throw PieceErrors.Malformed(_input, $"quantizing to '{WeightName}': {e.Message}", e);
        }
    }

    /// <summary>Whether the first row block (about 64 KB of output) of <paramref name="codes"/> dequantizes to exactly <paramref name="input"/>'s.</summary>
    bool LeadingRowsDequantizeTo(ReadOnlySpan<byte> codes, ReadOnlySpan<byte> scales, ReadOnlySpan<byte> input)
    {
        int inBytes = _inFmt == FloatFormat.F32 ? 4 : 2;
        if (_fp4)
        {
            int r = Math.Min(_rows, Math.Max(1, (64 << 10) / Math.Max(1, _cols * inBytes)));
            int groups = _cols / _group;
            return DequantEquality.Fp4(codes[..(r * _cols / 2)], r, _cols, scales[..(r * groups)], _group, input[..(r * _cols * inBytes)], _inFmt);
        }
        int rb = Math.Min(_rows, _block.Rows);
        int gc = _block.GridFor(_rows, _cols).Cols;
        return DequantEquality.Fp8(codes[..(rb * _cols)], rb, _cols, scales[..gc], Inner, _block, input[..(rb * _cols * inBytes)], _inFmt);
    }

    // refScale: the reference's scales in the format quantized with (Inner).
    void RunCore(Span<byte> codes, Span<byte> scales, ReadOnlySpan<byte> refScale, KernelOptions k)
    {
        ReadOnlySpan<byte> input = _input.All;
        if (_refCodes is Src rc && _refScale is Src)
        {
            refScale.CopyTo(scales);
            // Unchanged weights (the common case) are re-encoded exactly from the scales, without reading the reference
            // codes: within ExactEncode's scale ranges the only codes that dequantize to the weight are the reference's.
            // The encoder checks every value's exactness itself (tests cover every code); the leading rows are also
            // dequantized again and compared, a cheap guard against a layout mistake (a full check would cost 40% more CPU).
            if (EncodesExactly && (_fp4 ? ExactEncode.Fp4(input, _rows, _cols, scales, _group, codes) : ExactEncode.Fp8(input, _rows, _cols, scales, _block, codes))
                && LeadingRowsDequantizeTo(codes, scales, input))
            {
                Unchanged = Exact = true;
                return;
            }
            _readReferenceCodes = true;
            bool same = _fp4
                ? DequantEquality.Fp4(rc.All, _rows, _cols, refScale, _group, input, _inFmt)
                : DequantEquality.Fp8(rc.All, _rows, _cols, refScale, Inner, _block, input, _inFmt);
            if (same)
            {
                rc.All.CopyTo(codes);
                Unchanged = true;
                return;
            }
            QuantizeReport r = _fp4
                ? BlockQuant.Fp4(input, _inFmt, _rows, _cols, scales, _group, ScaleMode.Reuse, codes, k)
                : BlockQuant.Fp8(input, _inFmt, _rows, _cols, scales, Inner, _block, ScaleMode.Reuse, codes, k);
            ChangedBlocks = r.ChangedBlocks.Count;
            return;
        }
        if (_fp4) BlockQuant.Fp4(input, _inFmt, _rows, _cols, scales, _group, ScaleMode.Canonical, codes, k);
        else BlockQuant.Fp8(input, _inFmt, _rows, _cols, scales, Inner, _block, ScaleMode.Canonical, codes, k);
    }
}

/// <summary>The scale tensor produced by a <see cref="QuantPiece"/> (taken from its cache, or recomputed).</summary>
internal sealed class ScaleOfPiece(QuantPiece weight, ConcurrentDictionary<string, byte[]> cache) : Piece
{
    public QuantPiece Weight => weight;
    public override long Bytes => weight.ScaleBytes;
    /// <summary>
    /// Set when the weight is not written in this run (its shard belongs to another --part): the scale is then recomputed
    /// from the weight, whose ranges become this piece's inputs, so that they are read ahead and released from the map
    /// afterwards (a part holding 31,488 such scales otherwise kept every expert weight it read mapped: 22.9 GB RSS).
    /// </summary>
    public bool Recompute;
    public override IEnumerable<Src> Inputs => Recompute ? weight.Inputs : Array.Empty<Src>();
    public override IEnumerable<Src> Consumed => Recompute ? weight.Consumed : Array.Empty<Src>();
    public override void Produce(Span<byte> dest, KernelOptions k)
    {
        if (cache.TryRemove(weight.ScaleName, out var s)) { s.CopyTo(dest); return; }
        byte[] codes = System.Buffers.ArrayPool<byte>.Shared.Rent(checked((int)weight.Bytes));
        try { weight.Run(codes.AsSpan(0, (int)weight.Bytes), dest, k); }
        finally { System.Buffers.ArrayPool<byte>.Shared.Return(codes); }
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
