using System.Numerics.Tensors;

namespace Mtp.Quant;

/// <summary>
/// One <see cref="BlockQuant.Fp4"/> call over pinned buffers: quantizes a run of rows per task (see <see cref="Rows"/>).
/// The buffers stay pinned by the caller for the object's whole use.
/// </summary>
internal sealed unsafe class Fp4GroupQuantizer
{
    readonly byte* _in, _scales, _packed;
    readonly int _rows, _cols, _groups, _groupSize, _rowsPerTask, _ib;
    readonly FloatFormat _inFmt;
    readonly ScaleMode _mode;
    readonly KernelOptions _opts;

    /// <summary>The (row, group) pairs whose reused scale was replaced, per task.</summary>
    public List<(int, int)>[] Changed { get; }

    /// <summary>Pointers to the pinned input, scales and packed output; the shape as <see cref="BlockQuant.Fp4"/> checked it.</summary>
    public Fp4GroupQuantizer(byte* input, byte* scales, byte* packed, (int Rows, int Cols, int GroupSize, int RowsPerTask) shape,
        FloatFormat inputFormat, ScaleMode mode, KernelOptions options)
    {
        _in = input; _scales = scales; _packed = packed;
        (_rows, _cols, _groupSize, _rowsPerTask) = shape;
        _groups = (_cols + _groupSize - 1) / _groupSize;
        _inFmt = inputFormat;
        _ib = BlockDequant.BytesPerElement(inputFormat);
        _mode = mode;
        _opts = options;
        Changed = new List<(int, int)>[(_rows + _rowsPerTask - 1) / _rowsPerTask];
    }

    /// <summary>Quantizes task <paramref name="t"/>'s rows, group by group.</summary>
    public void Rows(int t)
    {
        var buf = new float[_groupSize];
        List<(int, int)>? list = null;
        int r0 = t * _rowsPerTask, r1 = Math.Min(_rows, r0 + _rowsPerTask);
        fixed (float* pb = buf)
        {
            for (int r = r0; r < r1; r++)
                for (int g = 0; g < _groups; g++)
                    Group(r, g, pb, ref list);
        }
        Changed[t] = list ?? [];
    }

    // Group g of row r: to binary32 in pb, its scale decided, divided and packed two codes a byte.
    void Group(int r, int g, float* pb, ref List<(int, int)>? list)
    {
        int c0 = g * _groupSize, n = Math.Min(_groupSize, _cols - c0);
        VectorKernels.ToF32(_in + ((long)r * _cols + c0) * _ib, _inFmt, n, pb);
        var w = new Span<float>(pb, n);
        float amax = MathF.Abs(TensorPrimitives.MaxMagnitude(w));
        if (!float.IsFinite(amax))
            throw new InvalidDataException($"group [{r}, {g}] of weight [{_rows}, {_cols}] contains a non-finite value.");
        byte* sp = _scales + (long)r * _groups + g;
        byte code = _mode == ScaleMode.Canonical ? BlockQuant.CanonicalFp4(amax, _opts) : Reused(r, g, *sp, amax, ref list);
        *sp = code;
        TensorPrimitives.Divide(w, E8M0.ToFloat(code), w);
        byte* dst = _packed + (long)r * (_cols / 2) + c0 / 2;
        for (int i = 0; i < n; i += 2)
        {
            int lo = BlockQuant.Fp4Code(pb[i]), hi = BlockQuant.Fp4Code(pb[i + 1]);
            dst[i / 2] = (byte)(lo | (hi << 4));
        }
    }

    // The reused E8M0 code, or a canonical one (listed) when the group would overflow it or it is NaN.
    byte Reused(int r, int g, byte code, float amax, ref List<(int, int)>? list)
    {
        bool replace;
        if (code == E8M0.NaN)
        {
            if (!_opts.AllowNonFiniteScales)
                throw new InvalidDataException($"reused E8M0 scale of group [{r}, {g}] is 0xFF (NaN): a scale must be finite, so the file it came from is damaged (fetch it again)");
            replace = true;
        }
        else replace = amax != 0f && !(amax / E8M0.ToFloat(code) < 7f);
        if (!replace) return code;
        (list ??= []).Add((r, g));
        return BlockQuant.CanonicalFp4(amax, _opts);
    }
}
