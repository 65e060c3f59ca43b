using System.Collections.Concurrent;
using Mtp.Quant;
using Mtp.SafeTensors;

namespace Mtp.Adapters;

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

    /// <summary>Writes the codes only (the scale, not written in this run or before its weight, is recomputed by its own piece).</summary>
    public override void Produce(Span<byte> dest, KernelOptions k) => Run(dest, new byte[ScaleBytes], k);

    /// <summary>This weight, producing its scale too for the <see cref="ScaleOfPiece"/> that follows it in the same run.</summary>
    public Piece HandingOverScale() => new WeightAndScalePiece(this, _cache);

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
        int rb = Math.Min(_rows, _block.RowChunk > 0 ? _block.RowChunk : _block.Rows); // one block row, or one chunk
        int gs = _block.GridFor(rb, _cols).Rows * _block.GridFor(_rows, _cols).Cols; // E8M0 scales: one byte each
        return RowChunkedBlocks.DequantizesTo(codes[..(rb * _cols)], rb, _cols, scales[..gs], Inner, _block, input[..(rb * _cols * inBytes)], _inFmt);
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
            // The encoder checks every value's exactness itself (tests cover every BF16 pattern; on the Vector512 path it
            // also decodes each stored code again in the same pass); the leading rows are dequantized again and compared,
            // a cheap guard against a layout mistake (ExactEncode.Fp8Verified / Fp4Verified do the full check).
            if (EncodesExactly && (_fp4 ? ExactEncode.Fp4(input, _rows, _cols, scales, _group, codes, k) : RowChunkedBlocks.ExactEncodeFp8(input, _rows, _cols, scales, _block, codes, k))
                && LeadingRowsDequantizeTo(codes, scales, input))
            {
                Unchanged = Exact = true;
                return;
            }
            _readReferenceCodes = true;
            bool same = _fp4
                ? DequantEquality.Fp4(rc.All, _rows, _cols, refScale, _group, input, _inFmt)
                : RowChunkedBlocks.DequantizesTo(rc.All, _rows, _cols, refScale, Inner, _block, input, _inFmt);
            if (same)
            {
                rc.All.CopyTo(codes);
                Unchanged = true;
                return;
            }
            QuantizeReport r = _fp4
                ? BlockQuant.Fp4(input, _inFmt, _rows, _cols, scales, _group, ScaleMode.Reuse, codes, k)
                : RowChunkedBlocks.Quantize(input, _inFmt, _rows, _cols, scales, Inner, _block, ScaleMode.Reuse, codes, k);
            ChangedBlocks = r.ChangedBlocks.Count;
            return;
        }
        if (_fp4) BlockQuant.Fp4(input, _inFmt, _rows, _cols, scales, _group, ScaleMode.Canonical, codes, k);
        else RowChunkedBlocks.Quantize(input, _inFmt, _rows, _cols, scales, Inner, _block, ScaleMode.Canonical, codes, k);
    }
}

/// <summary>
/// One quantization producing two tensors: the weight's codes, written here, and its scale, handed over (through the cache)
/// to the <see cref="ScaleOfPiece"/> scheduled after it, which waits for this piece.
/// </summary>
internal sealed class WeightAndScalePiece(QuantPiece weight, ConcurrentDictionary<string, byte[]> cache) : Piece
{
    public override long Bytes => weight.Bytes;
    public override IEnumerable<Src> Inputs => weight.Inputs;
    public override IEnumerable<Src> Consumed => weight.Consumed;
    public override void Produce(Span<byte> dest, KernelOptions k)
    {
        var scales = new byte[weight.ScaleBytes];
        weight.Run(dest, scales, k);
        cache[weight.ScaleName] = scales;
    }
}

/// <summary>
/// The scale tensor produced by a <see cref="QuantPiece"/>: taken from the cache, where the weight's
/// <see cref="WeightAndScalePiece"/> left it, or recomputed (<see cref="Recomputing"/>).
/// </summary>
internal sealed class ScaleOfPiece(QuantPiece weight, ConcurrentDictionary<string, byte[]> cache, bool recompute = false) : Piece
{
    public QuantPiece Weight => weight;
    public override long Bytes => weight.ScaleBytes;
    /// <summary>
    /// This scale, for a run that does not write its weight before it (the weight's shard belongs to another --part): it is
    /// then recomputed from the weight, whose ranges become this piece's inputs, so that they are read ahead and released
    /// from the map afterwards (a part holding 31,488 such scales otherwise kept every expert weight it read mapped: 22.9 GB RSS).
    /// </summary>
    public ScaleOfPiece Recomputing() => new(weight, cache, recompute: true);
    public override IEnumerable<Src> Inputs => recompute ? weight.Inputs : Array.Empty<Src>();
    public override IEnumerable<Src> Consumed => recompute ? weight.Consumed : Array.Empty<Src>();
    public override void Produce(Span<byte> dest, KernelOptions k)
    {
        if (cache.TryRemove(weight.ScaleName, out var s)) { s.CopyTo(dest); return; }
        byte[] codes = System.Buffers.ArrayPool<byte>.Shared.Rent(checked((int)weight.Bytes));
        try { weight.Run(codes.AsSpan(0, (int)weight.Bytes), dest, k); }
        finally { System.Buffers.ArrayPool<byte>.Shared.Return(codes); }
    }
}
