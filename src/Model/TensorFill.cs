using System.Runtime.InteropServices;
using Mtp.SafeTensors;
using TorchSharp;
using static TorchSharp.torch;

namespace Mtp.Model;

/// <summary>
/// Fills a model tensor from an <see cref="ITensorSource"/> without a managed copy. A CPU tensor of the source's dtype
/// receives the bytes in its own storage (the source copies or dequantizes straight into it); any other (another dtype,
/// a GPU) goes through one small staging tensor in the source dtype, moved on by <c>copy_</c> chunk by chunk (libtorch
/// converts the dtype and copies to the device). Memory is then the model plus one staging chunk.
/// </summary>
public static class TensorFill
{
    /// <summary>Largest chunk written straight into a tensor's storage.</summary>
    public const int DirectChunkBytes = 64 << 20;
    /// <summary>Size of the staging chunk of the converting path.</summary>
    public const int StagingChunkBytes = 16 << 20;

    // The tensor's first byte (storage offset included): the same entry point TorchSharp's own accessors use.
    [DllImport("LibTorchSharp")]
    static extern IntPtr THSTensor_data(IntPtr handle);

    /// <summary>The torch dtype holding a checkpoint dtype exactly, or null for one a model tensor cannot hold.</summary>
    public static ScalarType? TorchType(DType d) => d switch
    {
        DType.F32 => ScalarType.Float32,
        DType.BF16 => ScalarType.BFloat16,
        DType.F16 => ScalarType.Float16,
        DType.I32 => ScalarType.Int32,
        DType.I64 => ScalarType.Int64,
        _ => null,
    };

    /// <summary>Whether <see cref="Into"/> writes straight into <paramref name="target"/>'s storage for a source of <paramref name="d"/>.</summary>
    public static bool IsDirect(Tensor target, DType d) =>
        target.device_type == DeviceType.CPU && target.is_contiguous() && TorchType(d) == target.dtype;

    /// <summary>
    /// Copies tensor <paramref name="spec"/> of <paramref name="src"/> into <paramref name="target"/> (same shape; call under
    /// no_grad for parameters). Values convert as <c>copy_</c> does (BF16 to F32 exactly, F32 to BF16 to nearest even).
    /// </summary>
    public static void Into(ITensorSource src, TensorSpec spec, Tensor target)
    {
        var st = TorchType(spec.DType) ?? throw new ArgumentException($"{spec.Name}: dtype {spec.DType} cannot fill a tensor");
        if (ManagedStagingBaseline) IntoThroughManagedArrays(src, spec, target, st);
        else if (IsDirect(target, spec.DType)) src.Read(spec.Name, DirectChunkBytes, new StorageSink(target));
        else
        {
            using var sink = new StagingSink(target, st, Math.Max(1, (int)(spec.DType.ByteSize(1) ?? 1)));
            src.Read(spec.Name, StagingChunkBytes, sink);
        }
    }

    /// <summary>
    /// Benchmark baseline only (<c>mtp bench load --staged</c>): load as the project did before this class, through a
    /// managed copy of each whole tensor (decoded to a float[] or long[], made a tensor, cast, copied). Process-wide.
    /// </summary>
    public static bool ManagedStagingBaseline { get; set; }

    static void IntoThroughManagedArrays(ITensorSource src, TensorSpec spec, Tensor target, ScalarType st)
    {
        using var scope = NewDisposeScope();
        var bytes = Bytes(src, spec.Name);
        var info = new TensorInfo(spec.Name, spec.DType, spec.Shape, 0, bytes.Length);
        Tensor staged = spec.DType switch
        {
            DType.I32 => tensor(MemoryMarshal.Cast<byte, int>(bytes).ToArray(), spec.Shape),
            DType.I64 => tensor(MemoryMarshal.Cast<byte, long>(bytes).ToArray(), spec.Shape),
            _ => tensor(CheckpointIO.ReadFloat(bytes, info), spec.Shape),
        };
        target.copy_(staged.to(target.dtype, target.device));
    }

    /// <summary>Reads tensor <paramref name="name"/> of <paramref name="src"/> into a new byte array (small tensors carried unchanged).</summary>
    public static byte[] Bytes(ITensorSource src, string name)
    {
        var spec = src.Tensors.First(t => t.Name == name);
        var data = new byte[checked((int)(spec.DType.ByteSize(spec.Shape.Aggregate(1L, (a, b) => a * b)) ?? 0))];
        src.Read(name, DirectChunkBytes, new ArraySink(data));
        return data;
    }

    [DllImport("libc", EntryPoint = "madvise")]
    static extern int Madvise(nint addr, nuint length, int advice);

    // Untouched storage (a model built for loading is not zero-filled) asked to be backed by 2 MB pages where the kernel
    // allows it (transparent_hugepage "madvise" mode, Debian's default): 512x fewer first-touch page faults, which
    // otherwise cost more than the copy itself.
    static unsafe void AdviseHugePages(byte* p, long bytes)
    {
        const long Huge = 2L << 20;
        if (!OperatingSystem.IsLinux() || bytes < 2 * Huge) return;
        long a = ((long)p + Huge - 1) / Huge * Huge, e = ((long)p + bytes) / Huge * Huge;
        if (e <= a) return;
        try { Madvise((nint)a, (nuint)(e - a), 14 /* MADV_HUGEPAGE */); }
        catch (Exception x) when (x is DllNotFoundException or EntryPointNotFoundException) { }
    }

    sealed unsafe class StorageSink : ITensorSink
    {
        readonly byte* _base;
        readonly long _bytes;

        public StorageSink(Tensor target)
        {
            _base = (byte*)THSTensor_data(target.Handle);
            _bytes = target.numel() * target.ElementSize;
            AdviseHugePages(_base, _bytes);
        }

        public Span<byte> Begin(long offset, int length)
        {
            if (offset < 0 || offset + length > _bytes) throw new InvalidDataException($"chunk [{offset}, +{length}) outside a {_bytes}-byte tensor");
            return new Span<byte>(_base + offset, length);
        }

        public void End(long offset, int length) { }
    }

    sealed unsafe class StagingSink : ITensorSink, IDisposable
    {
        readonly Tensor _flat;
        readonly ScalarType _type;
        readonly int _elem;
        Tensor _stage;
        byte* _stageBase;

        public StagingSink(Tensor target, ScalarType sourceType, int elem)
        {
            _flat = target.view(-1);
            if (target.device_type == DeviceType.CPU && target.is_contiguous())
                AdviseHugePages((byte*)THSTensor_data(target.Handle), target.numel() * target.ElementSize);
            _elem = elem;
            _type = sourceType;
            _stage = empty(Math.Max(1, Math.Min(target.numel(), StagingChunkBytes / elem)), dtype: sourceType);
            _stageBase = (byte*)THSTensor_data(_stage.Handle);
        }

        public Span<byte> Begin(long offset, int length)
        {
            if (length > _stage.numel() * _elem)
            {
                // A piece that cannot split finer (one block row of a wide FP8 matrix): grow to it.
                _stage.Dispose();
                _stage = empty((length + _elem - 1) / _elem, dtype: _type);
                _stageBase = (byte*)THSTensor_data(_stage.Handle);
            }
            return new Span<byte>(_stageBase, length);
        }

        public void End(long offset, int length)
        {
            long n = length / _elem;
            using var to = _flat.narrow(0, offset / _elem, n);
            using var from = _stage.narrow(0, 0, n);
            to.copy_(from);
        }

        public void Dispose()
        {
            _flat.Dispose();
            _stage.Dispose();
        }
    }

    sealed class ArraySink(byte[] data) : ITensorSink
    {
        public Span<byte> Begin(long offset, int length) => data.AsSpan(checked((int)offset), length);
        public void End(long offset, int length) { }
    }
}
