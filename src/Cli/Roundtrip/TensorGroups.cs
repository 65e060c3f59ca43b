using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using Mtp.Adapters;

namespace Mtp.Cli.Roundtrip;

/// <summary>A group of HF tensors reported as one test case: a decoder layer, an MTP depth, the embeddings, ...</summary>
/// <param name="Name">"embeddings", "layer 3", "mtp 0", "visual" or "other".</param>
/// <param name="Order">Sort key: embeddings, layers, MTP depths, the rest.</param>
public sealed record TensorGroup(string Name, (int Kind, int Index) Order);

/// <summary>
/// Sorts HF tensor names into groups through the training-layout names the conversion gave them (conversion.json of the
/// training-layout output), so every family groups alike whatever its HF naming: <c>model.layers.{i}.*</c> is layer i,
/// <c>mtp.layers.{k}.*</c> MTP depth k, <c>model.visual.*</c> the vision tower, and every other tensor (embedding,
/// final norm, output head) "embeddings".
/// </summary>
public sealed partial class TensorGroups
{
    static readonly TensorGroup Embeddings = new("embeddings", (0, 0)), Visual = new("visual", (3, 0)), Other = new("other", (4, 0));
    readonly Dictionary<string, string> _nativeOf;
    readonly Dictionary<string, TensorGroup> _byPrefix = new(StringComparer.Ordinal);

    TensorGroups(Dictionary<string, string> nativeOf)
    {
        _nativeOf = nativeOf;
        foreach (var (hf, native) in nativeOf)
            if (LayerPrefix(hf) is string p) _byPrefix.TryAdd(p, OfNative(native));
    }

    /// <summary>The groups of a conversion to the training layout, read from <c>NATIVE_DIR/conversion.json</c>.</summary>
    /// <exception cref="CliException">Exit 3 when conversion.json is missing or not of the expected form (names the file).</exception>
    public static TensorGroups FromNativeOutput(string nativeDir)
    {
        string path = Path.Combine(nativeDir, Converter.ReportFileName);
        var map = new Dictionary<string, string>(StringComparer.Ordinal);
        if (!File.Exists(path)) throw new CliException(ExitCodes.Malformed, $"{path}: cannot read the conversion report: no such file", file: path);
        foreach (ReportTensor t in ReportDocument.Read(path).Tensors)
            foreach (string s in t.Sources) map.TryAdd(s, t.Name);
        return new TensorGroups(map);
    }

    /// <summary>The group of HF tensor <paramref name="hfName"/>. A tensor the conversion dropped (a tied MTP copy) joins the
    /// group of the tensors that share its layer prefix.</summary>
    public TensorGroup Of(string hfName)
    {
        if (_nativeOf.TryGetValue(hfName, out var native)) return OfNative(native);
        if (LayerPrefix(hfName) is string p && _byPrefix.TryGetValue(p, out var g)) return g;
        return Other;
    }

    static TensorGroup OfNative(string native)
    {
        if (MainLayer().Match(native) is { Success: true } m) return new TensorGroup($"layer {m.Groups[1].Value}", (1, int.Parse(m.Groups[1].Value)));
        if (MtpNames.TryLayerDepth(native, out int k)) return new TensorGroup($"mtp {k}", (2, k));
        if (native.StartsWith("mtp.", StringComparison.Ordinal)) return new TensorGroup("mtp", (2, int.MaxValue));
        if (native.StartsWith("model.visual.", StringComparison.Ordinal)) return Visual;
        return Embeddings;
    }

    // "model.layers.61." of "model.layers.61.embed_tokens.weight": the name up to its first numeric part.
    static string? LayerPrefix(string name) => FirstIndex().Match(name) is { Success: true } m ? m.Value : null;

    [GeneratedRegex(@"^model\.layers\.(\d+)\.")]
    private static partial Regex MainLayer();

    [GeneratedRegex(@"^[^0-9]*?\.\d+\.")]
    private static partial Regex FirstIndex();
}
