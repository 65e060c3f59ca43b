using System.Text.Json.Nodes;

namespace Mtp.SafeTensors;

/// <summary>
/// Where <see cref="ITensorSource.Read"/> puts a tensor's bytes: it asks for a span for each chunk, fills it, then says
/// the chunk is complete. A loader hands out the tensor's own storage (no copy in between) or a staging buffer it then
/// moves on (to another dtype or device).
/// </summary>
public interface ITensorSink
{
    /// <summary>The span that receives bytes [<paramref name="offset"/>, +<paramref name="length"/>) of the tensor.</summary>
    Span<byte> Begin(long offset, int length);

    /// <summary>The span returned by the matching <see cref="Begin"/> now holds its bytes.</summary>
    void End(long offset, int length);
}

/// <summary>
/// A set of named tensors whose bytes are produced on request, chunk by chunk: a checkpoint on disk
/// (<see cref="CheckpointSource"/>), or a checkpoint in another layout converted on the fly. Loaders read every tensor
/// through this, so they never need the whole tensor anywhere but in its destination.
/// </summary>
public interface ITensorSource : IDisposable
{
    /// <summary>The checkpoint directory the tensors come from (for messages and auxiliary files).</summary>
    string Directory { get; }

    /// <summary>The config.json describing these tensors, if any.</summary>
    JsonObject? Config { get; }

    /// <summary>Every tensor the source produces, in its order.</summary>
    IReadOnlyList<TensorSpec> Tensors { get; }

    /// <summary>Whether a tensor of that name exists.</summary>
    bool Contains(string name);

    /// <summary>
    /// Produces every byte of tensor <paramref name="name"/> (little-endian, row-major, in its <see cref="TensorSpec.DType"/>)
    /// into <paramref name="sink"/>, in order, in chunks of at most <paramref name="maxChunkBytes"/> (a chunk never
    /// splits an element). Source pages are released as chunks complete, so resident memory stays at one chunk.
    /// </summary>
    void Read(string name, int maxChunkBytes, ITensorSink sink);
}

/// <summary>An <see cref="ITensorSource"/> over a <see cref="Checkpoint"/>: chunks are copied straight from its memory maps.</summary>
public sealed class CheckpointSource : ITensorSource
{
    readonly bool _owns;
    readonly List<TensorSpec> _specs;

    /// <summary>Wraps <paramref name="checkpoint"/>; disposes it too when <paramref name="owns"/>.</summary>
    public CheckpointSource(Checkpoint checkpoint, bool owns = true)
    {
        Checkpoint = checkpoint;
        _owns = owns;
        _specs = checkpoint.Tensors.Select(t => new TensorSpec(t.Name, t.Info.DType, t.Info.Shape)).ToList();
    }

    /// <summary>Opens the checkpoint at <paramref name="path"/> strictly (see <see cref="Checkpoint.Open"/>).</summary>
    public static CheckpointSource Open(string path) => new(Checkpoint.Open(path));

    /// <summary>The checkpoint read.</summary>
    public Checkpoint Checkpoint { get; }
    /// <inheritdoc />
    public string Directory => Checkpoint.Directory;
    /// <inheritdoc />
    public JsonObject? Config => Checkpoint.Config;
    /// <inheritdoc />
    public IReadOnlyList<TensorSpec> Tensors => _specs;
    /// <inheritdoc />
    public bool Contains(string name) => Checkpoint.Contains(name);

    /// <inheritdoc />
    public void Read(string name, int maxChunkBytes, ITensorSink sink)
    {
        var loc = Checkpoint.Get(name);
        CopyChunks(loc.File, loc.Info, 0, loc.Info.ByteLength, maxChunkBytes, 0, sink);
    }

    /// <summary>
    /// Copies bytes [<paramref name="from"/>, +<paramref name="length"/>) of a stored tensor into <paramref name="sink"/>
    /// at <paramref name="sinkOffset"/> onwards, in element-aligned chunks, with positioned reads
    /// (<see cref="SafeTensorsFile.ReadAt"/>): no page of the map is touched, so none needs releasing.
    /// </summary>
    public static void CopyChunks(SafeTensorsFile file, TensorInfo info, long from, long length, int maxChunkBytes, long sinkOffset, ITensorSink sink)
    {
        int elem = Math.Max(1, (int)(info.DType.ByteSize(1) ?? 1));
        int chunk = Math.Max(elem, maxChunkBytes / elem * elem);
        for (long done = 0; done < length;)
        {
            int n = (int)Math.Min(chunk, length - done);
            file.ReadAt(info, from + done, sink.Begin(sinkOffset + done, n));
            sink.End(sinkOffset + done, n);
            done += n;
        }
    }

    /// <inheritdoc />
    public void Dispose()
    {
        if (_owns) Checkpoint.Dispose();
    }
}
