using System.Text;
using System.Text.Json;
using Mtp.SafeTensors.IO;

namespace Mtp.SafeTensors;

/// <summary>
/// Streams one safetensors file: the header is written from the tensor specs up front, then each
/// tensor's bytes in order, so memory does not depend on the file's size. Data goes to a temporary
/// sibling that is renamed over the final path only by <see cref="Complete"/>; disposing an
/// incomplete writer deletes it.
/// </summary>
public sealed class SafeTensorsWriter : IDisposable
{
    readonly SequentialFile _out;
    readonly string _tmp;
    readonly IReadOnlyList<TensorSpec> _specs;
    int _current;
    long _writtenInCurrent;
    bool _completed;
    /// <summary>The default write-behind depth of <see cref="WriteMode.WriteBehind"/> files (see <see cref="SequentialFile.DefaultWriteBehindBytes"/>).</summary>
    public const long DefaultWriteBehindBytes = SequentialFile.DefaultWriteBehindBytes;

    /// <summary>Final path of the file.</summary>
    public string Path { get; }
    /// <summary>Absolute offset of the data buffer in the file (8 + header length, a multiple of 8).</summary>
    public long DataStart { get; }
    /// <summary>The tensors to be written, in file order.</summary>
    public IReadOnlyList<TensorSpec> Specs => _specs;

    SafeTensorsWriter(string path, string tmp, SequentialFile fs, IReadOnlyList<TensorSpec> specs, long dataStart)
    {
        Path = path;
        _tmp = tmp;
        _out = fs;
        _specs = specs;
        DataStart = dataStart;
        SkipEmpty();
    }

    /// <summary>Creates the file (as a temporary) and writes its header.</summary>
    /// <param name="path">Final path.</param>
    /// <param name="tensors">The tensors, in file order.</param>
    /// <param name="metadata">The header's <c>__metadata__</c>.</param>
    /// <param name="mode">How the bytes reach the disk: left in the page cache (default, for files read back soon), under
    /// write-behind, or direct (streams of many GB: bounded memory and little CPU).</param>
    public static SafeTensorsWriter Create(string path, IReadOnlyList<TensorSpec> tensors, IReadOnlyDictionary<string, string>? metadata = null,
        WriteMode mode = WriteMode.Cached)
    {
        byte[] header = BuildHeader(tensors, metadata);
        string tmp = OutputTransaction.FileTempPathFor(path);
        var fs = SequentialFile.Create(tmp, mode);
        try
        {
            long total = tensors.Sum(t => t.ByteLength);
            fs.Reserve(8 + header.Length + total); // the final size up front: a file too large for the file system fails here, early
            Span<byte> len = stackalloc byte[8];
            BitConverter.TryWriteBytes(len, (ulong)header.Length);
            fs.Write(len);
            fs.Write(header);
        }
        catch
        {
            fs.Dispose();
            File.Delete(tmp);
            throw;
        }
        return new SafeTensorsWriter(path, tmp, fs, tensors, 8 + header.Length);
    }

    /// <summary>The JSON header bytes (space-padded so the data starts at a multiple of 8).</summary>
    public static byte[] BuildHeader(IReadOnlyList<TensorSpec> tensors, IReadOnlyDictionary<string, string>? metadata)
    {
        var names = new HashSet<string>(StringComparer.Ordinal);
        using var ms = new MemoryStream();
        using (var w = new Utf8JsonWriter(ms))
        {
            w.WriteStartObject();
            if (metadata is { Count: > 0 })
            {
                w.WriteStartObject("__metadata__");
                foreach (var kv in metadata) w.WriteString(kv.Key, kv.Value);
                w.WriteEndObject();
            }
            long offset = 0;
            foreach (TensorSpec t in tensors)
            {
                if (t.Name == "__metadata__" || !names.Add(t.Name))
                    throw new ArgumentException($"tensor name '{t.Name}' is duplicated or reserved");
                long size = t.ByteLength;
                w.WriteStartObject(t.Name);
                w.WriteString("dtype", t.DType.Name());
                w.WriteStartArray("shape");
                foreach (long d in t.Shape) w.WriteNumberValue(d);
                w.WriteEndArray();
                w.WriteStartArray("data_offsets");
                w.WriteNumberValue(offset);
                w.WriteNumberValue(offset + size);
                w.WriteEndArray();
                w.WriteEndObject();
                offset += size;
            }
            w.WriteEndObject();
        }
        int len = (int)ms.Length;
        int padded = (len + 7) / 8 * 8;
        var bytes = new byte[padded];
        ms.GetBuffer().AsSpan(0, len).CopyTo(bytes);
        bytes.AsSpan(len).Fill((byte)' ');
        return bytes;
    }

    /// <summary>The tensor whose bytes are expected next, or null when all are written.</summary>
    public TensorSpec? Next => _current < _specs.Count ? _specs[_current] : null;

    /// <summary>Writes all bytes of the next tensor, which must be named <paramref name="name"/>.</summary>
    public void Write(string name, ReadOnlySpan<byte> bytes)
    {
        TensorSpec spec = Next ?? throw new InvalidOperationException($"tensor '{name}': all tensors are already written");
        if (spec.Name != name) throw new InvalidOperationException($"tensor '{name}' written out of order: expected '{spec.Name}'");
        if (_writtenInCurrent != 0) throw new InvalidOperationException($"tensor '{name}' is partly written already");
        if (bytes.Length != spec.ByteLength) throw new ArgumentException($"tensor '{name}': got {bytes.Length} bytes, expected {spec.ByteLength}");
        Append(bytes);
    }

    /// <summary>Appends a chunk of the current tensor's bytes (chunks may cross into the next tensor).</summary>
    public void Append(ReadOnlySpan<byte> bytes)
    {
        while (!bytes.IsEmpty)
        {
            TensorSpec spec = Next ?? throw new InvalidOperationException($"{Path}: more bytes than the header declares");
            int n = (int)Math.Min(bytes.Length, spec.ByteLength - _writtenInCurrent);
            _out.Write(bytes[..n]);
            bytes = bytes[n..];
            _writtenInCurrent += n;
            if (_writtenInCurrent == spec.ByteLength) { _current++; _writtenInCurrent = 0; SkipEmpty(); }
        }
    }

    void SkipEmpty()
    {
        while (_current < _specs.Count && _specs[_current].ByteLength == 0) _current++;
    }

    /// <summary>Checks every tensor was written, flushes to disk and renames the file into place.</summary>
    public void Complete()
    {
        if (Next is TensorSpec missing)
            throw new InvalidOperationException($"{Path}: tensor '{missing.Name}' was not (fully) written");
        _out.Complete();
        _out.Dispose();
        File.Move(_tmp, Path, overwrite: true);
        _completed = true;
    }

    /// <inheritdoc />
    public void Dispose()
    {
        _out.Dispose();
        if (!_completed && File.Exists(_tmp)) File.Delete(_tmp);
    }

    /// <summary>Writes a whole file from in-memory tensors (small files, tests, configs of tools).</summary>
    public static void WriteFile(string path, IEnumerable<(TensorSpec Spec, byte[] Data)> tensors, IReadOnlyDictionary<string, string>? metadata = null)
    {
        var list = tensors.ToList();
        using var w = Create(path, list.Select(t => t.Spec).ToList(), metadata);
        foreach (var (spec, data) in list) w.Write(spec.Name, data);
        w.Complete();
    }
}
