using System.Text.Json.Nodes;
using Mtp.Quant;
using Mtp.SafeTensors;

namespace Mtp.Adapters;

/// <summary>
/// An HF checkpoint seen in the training layout without writing it: the conversion plan of <c>convert --to native</c>
/// (same rules, same strictness, same output dtype) run on demand, tensor by tensor, chunk by chunk. FP8/FP4 blocks are
/// dequantized straight into the reader's destination and each chunk's source pages are released once produced, so
/// nothing but the destination holds a tensor. The bytes equal, bit for bit, those <see cref="Converter.ToNative"/> writes.
/// </summary>
public sealed class NativeView : ITensorSource
{
    readonly Checkpoint _src;
    readonly NativePlan _plan;
    readonly Dictionary<string, PlannedTensor> _byName;
    readonly List<TensorSpec> _specs;
    readonly KernelOptions _kernel = new() { MaxThreads = 0 }; // every core: the view dequantizes on the loading thread

    NativeView(Checkpoint src, NativePlan plan)
    {
        _src = src;
        _plan = plan;
        _byName = plan.Outputs.ToDictionary(o => o.Name, StringComparer.Ordinal);
        _specs = plan.Outputs.Select(o => o.Spec).ToList();
        Lineage = plan.SourceRecord(src);
    }

    /// <summary>
    /// Plans the HF checkpoint at <paramref name="hfDir"/> (headers only; tied MTP copies are compared, as convert does).
    /// <paramref name="options"/> gives the output dtype (<see cref="ConvertOptions.DType"/>, default BF16), the family,
    /// the expert layout and whether unknown tensors are carried.
    /// </summary>
    /// <exception cref="AdapterException">Missing or unknown tensors, malformed input (one-line message).</exception>
    /// <exception cref="SafeTensorsException">A malformed safetensors file or index.</exception>
    public static NativeView Open(string hfDir, ConvertOptions? options = null)
    {
        if (!System.IO.Directory.Exists(hfDir) && !File.Exists(hfDir)) throw new AdapterException(AdapterErrorKind.Usage, $"{hfDir}: no such file or directory");
        return Open(Checkpoint.Open(hfDir), options);
    }

    /// <summary>
    /// Like <see cref="Open(string, ConvertOptions?)"/> on a checkpoint already open (its headers are not read again). The
    /// view owns <paramref name="src"/> from here on: it is disposed with the view, or at once if planning fails.
    /// </summary>
    public static NativeView Open(Checkpoint src, ConvertOptions? options = null)
    {
        options ??= new ConvertOptions();
        try { return new NativeView(src, Converter.PlanNative(src, src.Directory, options, new TiedCopies(null, options.DropBehind))); }
        catch
        {
            src.Dispose();
            throw;
        }
    }

    /// <inheritdoc />
    public string Directory => _src.Directory;
    /// <summary>The training layout's config.json (what convert writes: no quantization_config, the output dtype).</summary>
    public JsonObject? Config => _plan.Config;
    /// <inheritdoc />
    public IReadOnlyList<TensorSpec> Tensors => _specs;
    /// <summary>The family id.</summary>
    public string Family => _plan.Family;
    /// <summary>
    /// The HF source record conversion.json would carry (<see cref="Mtp.Adapters.Lineage.SourceKeys"/>): a checkpoint saved
    /// from what was loaded here exports back to the source format with it.
    /// </summary>
    public JsonObject Lineage { get; }
    /// <summary>HF tensors left out on purpose (MTP copies identical to the main embedding/head), with the reason.</summary>
    public IReadOnlyList<(string Name, string Reason)> Dropped => _plan.Dropped;

    /// <inheritdoc />
    public bool Contains(string name) => _byName.ContainsKey(name);

    /// <inheritdoc />
    public void Read(string name, int maxChunkBytes, ITensorSink sink)
    {
        if (!_byName.TryGetValue(name, out var t))
            throw new SafeTensorsException(SafeTensorsError.TensorNotFound, Directory, name, "no such tensor in the planned training layout");
        long at = 0;
        foreach (Piece piece in t.Pieces)
        {
            if (piece.Direct is Src d)
            {
                CheckpointSource.CopyChunks(d.File, d.Info, d.Offset, d.Length, maxChunkBytes, at, sink);
                at += d.Length;
                continue;
            }
            foreach (Piece sub in piece.Split(Math.Max(1, maxChunkBytes)))
            {
                int n = checked((int)sub.Bytes);
                var dest = sink.Begin(at, n);
                try { sub.Produce(dest, _kernel); }
                catch (Exception e) when (e is ArgumentException or InvalidDataException or InvalidOperationException)
                {
                    throw new AdapterException(AdapterErrorKind.Malformed, $"tensor '{t.Name}' (from {string.Join(", ", t.Sources.Take(2))}): {e.Message.Replace('\n', ' ')}", e)
                    { File = sub.Inputs.FirstOrDefault().File?.Path, Tensor = t.Sources.FirstOrDefault() };
                }
                sink.End(at, n);
                foreach (Src s in sub.Consumed) MappedPages.Unmap(s, 0, s.Length);
                at += n;
            }
        }
    }

    /// <inheritdoc />
    public void Dispose() => _src.Dispose();
}
