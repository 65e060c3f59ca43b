using System.Numerics.Tensors;
using System.Runtime.InteropServices;

namespace Mtp.Quant;

/// <summary>
/// One <see cref="BlockQuant.Fp8"/> call over pinned buffers: quantizes one row of blocks per task (see
/// <see cref="BlockRow"/>). The buffers stay pinned by the caller for the object's whole use.
/// </summary>
internal sealed unsafe class Fp8BlockQuantizer
{
    readonly byte* _in, _scales, _codes;
    readonly int _rows, _cols, _gc, _b0, _b1, _ib, _scaleLen;
    readonly FloatFormat _inFmt;
    readonly ScaleFormat _sFmt;
    readonly ScaleMode _mode;
    readonly KernelOptions _opts;

    /// <summary>Blocks whose reused scale was replaced, per row of blocks.</summary>
    public List<(int, int)>[] Changed { get; }

    /// <summary>Pointers to the pinned input, scales and codes; the shapes as <see cref="BlockQuant.Fp8"/> checked them.</summary>
    public Fp8BlockQuantizer(byte* input, byte* scales, byte* codes, (int Rows, int Cols, int ScaleBytes) shape,
        (FloatFormat Input, ScaleFormat Scale, BlockSize Block) formats, ScaleMode mode, KernelOptions options)
    {
        _in = input; _scales = scales; _codes = codes;
        (_rows, _cols, _scaleLen) = shape;
        (_inFmt, _sFmt, var block) = formats;
        _b0 = block.Rows; _b1 = block.Cols;
        var (gr, gc) = block.GridFor(_rows, _cols);
        _gc = gc;
        _ib = BlockDequant.BytesPerElement(_inFmt);
        _mode = mode;
        _opts = options;
        Changed = new List<(int, int)>[gr];
    }

    /// <summary>Quantizes block row <paramref name="br"/>: its scales decided (kept, replaced or canonical), then its codes.</summary>
    public void BlockRow(int br)
    {
        int r0 = br * _b0, r1 = Math.Min(_rows, r0 + _b0), nr = r1 - r0;
        // Vector512 and BF16 input: amax and codes straight from the input, no binary32 tile.
        bool direct = VectorWidth.Use512 && _inFmt == FloatFormat.BF16;
        // The direct path reads a block row in memory order. Reuse mode with usable scales: quantize with them while
        // taking the maxima (one pass) and redo only the blocks whose scale the rules below replace; otherwise all
        // block maxima first, then all codes (two passes).
        float[] divs = direct ? new float[_gc] : [];
        bool guessed = direct && _mode == ScaleMode.Reuse && GuessScales(new Span<byte>(_scales, _scaleLen), _sFmt, br * _gc, divs);
        float[] guess = guessed ? (float[])divs.Clone() : [];
        // Division-free tables per block (see Fp8QuantLut), for the divisors of the codes pass.
        byte* tables = direct ? (byte*)NativeMemory.Alloc((nuint)_gc * Fp8QuantLut.TableBytes) : null;
        try { QuantizeBlockRow(br, r0, r1, direct, divs, guessed, guess, tables); }
        finally { NativeMemory.Free(tables); }
    }

    void QuantizeBlockRow(int br, int r0, int r1, bool direct, float[] divs, bool guessed, float[] guess, byte* tables)
    {
        int nr = r1 - r0;
        var tile = direct ? [] : new float[nr * Math.Min(_b1, _cols)];
        List<(int, int)>? list = null;
        float[] amaxes = !direct ? [] : guessed ? QuantizeWithGuess(r0, r1, divs, tables) : VectorKernels.AmaxBf16Blocks((ushort*)_in, _cols, r0, nr, _b1, _gc);
        fixed (float* pt = tile)
        {
            for (int bc = 0; bc < _gc; bc++)
            {
                int j0 = bc * _b1, nc = Math.Min(_b1, _cols - j0);
                float amax = direct ? amaxes[bc] : TileAmax(pt, r0, nr, j0, nc);
                if (!float.IsFinite(amax))
                    throw new InvalidDataException($"block [{br}, {bc}] of weight [{_rows}, {_cols}] contains a non-finite value.");
                float s = Scale(br, bc, amax, ref list);
                float div = s == 0f ? 1f : s;   // only possible for an all-zero block
                if (direct) divs[bc] = div;
                else
                    for (int r = 0; r < nr; r++)
                        VectorKernels.QuantFp8Row(pt + r * nc, nc, div, _codes + (long)(r0 + r) * _cols + j0);
            }
        }
        if (direct && !guessed)
        {
            var luts = Luts(divs, tables, r1 - r0);
            for (int r = r0; r < r1; r++)
                VectorKernels.QuantFp8RowsBf16((ushort*)_in + (long)r * _cols, _cols, _b1, _gc, divs, _codes + (long)r * _cols, luts: luts);
        }
        else if (guessed) Requantize(r0, r1, divs, guess);
        Changed[br] = list ?? [];
    }

    // The one-pass direct path: codes with the reused scales while taking each block's maximum.
    float[] QuantizeWithGuess(int r0, int r1, float[] divs, byte* tables)
    {
        var acc = new System.Runtime.Intrinsics.Vector512<ushort>[_gc];
        var tails = new int[_gc];
        var luts = Luts(divs, tables, r1 - r0);
        for (int r = r0; r < r1; r++)
            VectorKernels.QuantFp8RowsBf16((ushort*)_in + (long)r * _cols, _cols, _b1, _gc, divs, _codes + (long)r * _cols, acc, tails, luts);
        return VectorKernels.BlockMaxima(acc, tails);
    }

    // Weights a block needs before its tables pay off: building them took ~195 ns and saves ~0.12 ns per weight
    // (BENCHMARKS.md "BF16 -> FP8 without a division"), so break-even is ~1600; narrower blocks than 64 columns never use them.
    const int MinLutWeights = 4096;

    // The division-free tables of each block's divisor at tables (constants -1 where the kernel divides instead).
    (IntPtr, int[]) Luts(float[] divs, byte* tables, int nr)
    {
        var constants = new int[divs.Length];
        for (int bc = 0; bc < divs.Length; bc++)
        {
            int nc = Math.Min(_b1, _cols - bc * _b1);
            bool worth = nc >= 64 && (long)nr * nc >= MinLutWeights && Fp8QuantLut.Serves(divs[bc]);
            constants[bc] = worth ? Fp8QuantLut.Build(divs[bc], tables + (long)bc * Fp8QuantLut.TableBytes) : -1;
        }
        return ((IntPtr)tables, constants);
    }

    // The block [r0, r0+nr) x [j0, j0+nc) in binary32 into the tile; its largest magnitude.
    float TileAmax(float* pt, int r0, int nr, int j0, int nc)
    {
        for (int r = 0; r < nr; r++)
            VectorKernels.ToF32(_in + ((long)(r0 + r) * _cols + j0) * _ib, _inFmt, nc, pt + r * nc);
        return MathF.Abs(TensorPrimitives.MaxMagnitude(new ReadOnlySpan<float>(pt, nr * nc)));
    }

    // The scale block [br, bc] is quantized with: canonical, or the reused one unless the rules replace it (then listed).
    float Scale(int br, int bc, float amax, ref List<(int, int)>? list)
    {
        var sspan = new Span<byte>(_scales, _scaleLen);
        int si = br * _gc + bc;
        if (_mode == ScaleMode.Canonical) return BlockQuant.WriteCanonicalFp8(sspan, _sFmt, si, amax, _opts);
        float s = BlockDequant.ReadScale(sspan, _sFmt, si);
        bool replace;
        if (!float.IsFinite(s))
        {
            if (!_opts.AllowNonFiniteScales)
                throw new InvalidDataException($"reused scale of block [{br}, {bc}] is {s}: a scale must be finite, so the file it came from is damaged (fetch it again)");
            replace = true;
        }
        else if (amax == 0f) replace = false;
        else if (s == 0f) replace = true;
        else replace = amax / MathF.Abs(s) > 464f;
        if (!replace) return s;
        (list ??= []).Add((br, bc));
        return BlockQuant.WriteCanonicalFp8(sspan, _sFmt, si, amax, _opts);
    }

    // After the one-pass path: the codes of the blocks whose scale was not the guessed one, again.
    void Requantize(int r0, int r1, float[] divs, float[] guess)
    {
        for (int bc = 0; bc < _gc; bc++)
            if (BitConverter.SingleToInt32Bits(divs[bc]) != BitConverter.SingleToInt32Bits(guess[bc]))
                for (int r = r0; r < r1; r++)
                {
                    int j0 = bc * _b1;
                    VectorKernels.QuantFp8RowBf16((ushort*)_in + (long)r * _cols + j0, Math.Min(_b1, _cols - j0), divs[bc], _codes + (long)r * _cols + j0);
                }
    }

    /// <summary>The reused scales of one row of blocks (from index <paramref name="first"/>) as divisors, or false when one is
    /// zero or not finite (those blocks take the two-pass path, which decides what to do with them).</summary>
    static bool GuessScales(ReadOnlySpan<byte> scales, ScaleFormat fmt, int first, float[] divs)
    {
        for (int bc = 0; bc < divs.Length; bc++)
        {
            float s = BlockDequant.ReadScale(scales, fmt, first + bc);
            if (s == 0f || !float.IsFinite(s)) return false;
            divs[bc] = s;
        }
        return true;
    }
}
