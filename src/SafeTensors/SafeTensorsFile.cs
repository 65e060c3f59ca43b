using System.IO.MemoryMappedFiles;

namespace Mtp.SafeTensors;

/// <summary>
/// One safetensors file, validated on open and memory-mapped read-only: tensor bytes are served
/// straight from the page cache without copies.
/// </summary>
public sealed unsafe class SafeTensorsFile : IDisposable
{
    readonly MemoryMappedFile? _map;
    readonly MemoryMappedViewAccessor? _view;
    readonly byte* _base;
    readonly Dictionary<string, TensorInfo> _byName;
    bool _disposed;

    /// <summary>Path the file was opened from.</summary>
    public string Path { get; }
    /// <summary>The validated header.</summary>
    public SafeTensorsHeader Header { get; }
    /// <summary>Total file length in bytes.</summary>
    public long FileLength { get; }
    /// <summary>Tensors in data-offset order.</summary>
    public IReadOnlyList<TensorInfo> Tensors => Header.Tensors;
    /// <summary>The <c>__metadata__</c> map.</summary>
    public IReadOnlyDictionary<string, string> Metadata => Header.Metadata;

    SafeTensorsFile(string path, SafeTensorsHeader header, long fileLength, MemoryMappedFile? map, MemoryMappedViewAccessor? view, byte* basePtr)
    {
        Path = path;
        Header = header;
        FileLength = fileLength;
        _map = map;
        _view = view;
        _base = basePtr;
        _byName = header.Tensors.ToDictionary(t => t.Name, StringComparer.Ordinal);
    }

    /// <summary>Opens and strictly validates <paramref name="path"/>; throws <see cref="SafeTensorsException"/> on any violation.</summary>
    public static SafeTensorsFile Open(string path)
    {
        SafeTensorsHeader header;
        long length;
        try
        {
            using var fs = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1, FileOptions.None);
            length = fs.Length;
            Span<byte> first9 = stackalloc byte[9];
            int got = fs.ReadAtLeast(first9, 9, throwOnEndOfStream: false);
            long n = HeaderParser.CheckLength(path, first9[..Math.Min(got, 8)], length, got == 9 ? first9[8] : -1);
            fs.Position = 8;
            // n is capped and checked against the file length, so this allocation is bounded by real bytes.
            var json = new byte[n];
            fs.ReadExactly(json);
            header = HeaderParser.Parse(path, json, length - 8 - n);
        }
        catch (IOException e) when (e is not EndOfStreamException)
        {
            throw new SafeTensorsException(SafeTensorsError.Io, path, null, e.Message, e);
        }
        catch (UnauthorizedAccessException e)
        {
            throw new SafeTensorsException(SafeTensorsError.Io, path, null, e.Message, e);
        }
        MemoryMappedFile? map = null;
        MemoryMappedViewAccessor? view = null;
        byte* basePtr = null;
        if (length > header.DataStart)
        {
            try
            {
                map = MemoryMappedFile.CreateFromFile(
                    new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1), null, 0,
                    MemoryMappedFileAccess.Read, HandleInheritability.None, leaveOpen: false);
                view = map.CreateViewAccessor(0, 0, MemoryMappedFileAccess.Read);
                view.SafeMemoryMappedViewHandle.AcquirePointer(ref basePtr);
                basePtr += view.PointerOffset;
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                view?.Dispose();
                map?.Dispose();
                throw new SafeTensorsException(SafeTensorsError.Io, path, null, "cannot map file: " + e.Message, e);
            }
        }
        return new SafeTensorsFile(path, header, length, map, view, basePtr);
    }

    /// <summary>Whether the file holds a tensor named <paramref name="name"/>.</summary>
    public bool Contains(string name) => _byName.ContainsKey(name);

    /// <summary>Header entry of <paramref name="name"/>.</summary>
    public TensorInfo Get(string name) =>
        _byName.TryGetValue(name, out var t) ? t
        : throw new SafeTensorsException(SafeTensorsError.TensorNotFound, Path, name, "no such tensor in this file");

    /// <summary>Header entry, or null.</summary>
    public TensorInfo? TryGet(string name) => _byName.GetValueOrDefault(name);

    /// <summary>
    /// Reads bytes [<paramref name="offset"/>, +dest.Length) of <paramref name="tensor"/> into <paramref name="dest"/> with
    /// positioned reads, not through the mapping: the kernel copies from its page cache straight into the destination,
    /// with no page faults on the map and nothing added to this process's resident memory.
    /// </summary>
    /// <exception cref="SafeTensorsException">The file is shorter than its header says, or cannot be read.</exception>
    public void ReadAt(TensorInfo tensor, long offset, Span<byte> dest)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (offset < 0 || offset + dest.Length > tensor.ByteLength) throw new ArgumentOutOfRangeException(nameof(offset));
        var handle = _handle ?? OpenHandle();
        long at = Header.DataStart + tensor.Begin + offset;
        try
        {
            while (dest.Length > 0)
            {
                int n = RandomAccess.Read(handle, dest, at);
                if (n == 0) throw new SafeTensorsException(SafeTensorsError.Io, Path, tensor.Name, $"file ends at byte {at}, inside the tensor");
                dest = dest[n..];
                at += n;
            }
        }
        catch (IOException e)
        {
            throw new SafeTensorsException(SafeTensorsError.Io, Path, tensor.Name, e.Message, e);
        }
    }

    Microsoft.Win32.SafeHandles.SafeFileHandle OpenHandle()
    {
        lock (_byName)
            return _handle ??= File.OpenHandle(Path, FileMode.Open, FileAccess.Read, FileShare.Read);
    }

    Microsoft.Win32.SafeHandles.SafeFileHandle? _handle;

    /// <summary>The tensor's bytes as a span over the mapping (tensors up to 2 GiB).</summary>
    public ReadOnlySpan<byte> GetBytes(TensorInfo tensor)
    {
        if (tensor.ByteLength > int.MaxValue)
            throw new SafeTensorsException(SafeTensorsError.Io, Path, tensor.Name, $"{tensor.ByteLength} bytes is too large for one span; use GetData");
        return GetData(tensor).Slice(0, (int)tensor.ByteLength);
    }

    /// <summary>The bytes of the tensor named <paramref name="name"/>.</summary>
    public ReadOnlySpan<byte> GetBytes(string name) => GetBytes(Get(name));

    /// <summary>A handle on a tensor's bytes of any size, sliceable into spans.</summary>
    public TensorData GetData(TensorInfo tensor)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (tensor.ByteLength == 0) return new TensorData(null, 0);
        return new TensorData(_base + Header.DataStart + tensor.Begin, tensor.ByteLength);
    }

    /// <summary>
    /// Done with <paramref name="tensor"/>: its whole pages leave this process's mapping (MADV_DONTNEED; they are clean and
    /// file-backed, so a later read faults them in again) — a loader that walks a checkpoint then holds one tensor's
    /// pages at a time instead of every shard it has read. Best effort, Linux only; a no-op elsewhere.
    /// </summary>
    public void ReleasePages(TensorInfo tensor) => ReleasePages(tensor, 0, tensor.ByteLength);

    /// <summary>
    /// Like <see cref="ReleasePages(TensorInfo)"/> for the bytes [<paramref name="offset"/>, +<paramref name="length"/>) of
    /// <paramref name="tensor"/> only (the whole pages inside that range): a loader copying a 15 GB tensor in chunks holds
    /// one chunk's pages at a time.
    /// </summary>
    public void ReleasePages(TensorInfo tensor, long offset, long length)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (length <= 0 || _base == null || !OperatingSystem.IsLinux()) return;
        long page = Environment.SystemPageSize;
        long a = (long)(_base + Header.DataStart + tensor.Begin + offset), e = a + length;
        a = (a + page - 1) / page * page;
        e = e / page * page;
        if (e <= a) return;
        try { Madvise((nint)a, (nuint)(e - a), 4 /* MADV_DONTNEED */); }
        catch (Exception x) when (x is DllNotFoundException or EntryPointNotFoundException) { }
    }

    [System.Runtime.InteropServices.DllImport("libc", EntryPoint = "madvise")]
    static extern int Madvise(nint addr, nuint length, int advice);

    /// <summary>Absolute file offset of a tensor's first byte (for range copies).</summary>
    public long AbsoluteOffset(TensorInfo tensor) => Header.DataStart + tensor.Begin;

    /// <inheritdoc />
    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        if (_view != null)
        {
            _view.SafeMemoryMappedViewHandle.ReleasePointer();
            _view.Dispose();
        }
        _map?.Dispose();
        _handle?.Dispose();
    }
}

/// <summary>A tensor's bytes inside a mapping; valid while its file is open.</summary>
public readonly unsafe struct TensorData
{
    readonly byte* _ptr;

    /// <summary>Byte length.</summary>
    public long Length { get; }

    internal TensorData(byte* ptr, long length)
    {
        _ptr = ptr;
        Length = length;
    }

    /// <summary>Raw pointer to the first byte (null when empty).</summary>
    public byte* Pointer => _ptr;

    /// <summary>A span over bytes [<paramref name="start"/>, start + <paramref name="length"/>).</summary>
    public ReadOnlySpan<byte> Slice(long start, int length)
    {
        if (start < 0 || length < 0 || start + length > Length) throw new ArgumentOutOfRangeException(nameof(start));
        return length == 0 ? ReadOnlySpan<byte>.Empty : new ReadOnlySpan<byte>(_ptr + start, length);
    }
}
