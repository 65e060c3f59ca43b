using System.Text.Json;
using System.Text.Json.Nodes;
using Mtp.SafeTensors;

namespace Mtp.Adapters;

/// <summary>One source tensor as recorded by <c>convert --to native</c>: its HF name, dtype and shape.</summary>
/// <param name="Name">HF tensor name.</param>
/// <param name="DType">HF dtype.</param>
/// <param name="Shape">HF shape.</param>
public sealed record ReportedSourceTensor(string Name, DType DType, long[] Shape);

/// <summary>
/// The fields of a training-layout checkpoint's conversion.json that <c>convert --to hf</c> reads back: the family,
/// the HF header of every source tensor and the source quantization_config. The file is input like any other
/// (hand-edited, truncated, bit-flipped), so each field is checked for its kind and a violation is a malformed-input
/// error naming the file and the field. Fields not read here are not checked.
/// </summary>
/// <param name="Family">The recorded family id, if any.</param>
/// <param name="SourceTensors">The recorded HF tensors, if any.</param>
/// <param name="SourceQuantizationConfig">The source quantization_config object, if any.</param>
public sealed record ConversionReport(string? Family, IReadOnlyList<ReportedSourceTensor>? SourceTensors, JsonObject? SourceQuantizationConfig)
{
    /// <summary>Reads DIR/conversion.json (or the one beside a file path); null when there is none.</summary>
    /// <exception cref="AdapterException">Malformed: not JSON, not an object, or a field of the wrong kind.</exception>
    public static ConversionReport? Read(string dir)
    {
        string path = Path.Combine(Directory.Exists(dir) ? dir : Path.GetDirectoryName(Path.GetFullPath(dir))!, Converter.ReportFileName);
        if (!File.Exists(path)) return null;
        JsonNode? root;
        try { root = JsonNode.Parse(File.ReadAllText(path)); }
        catch (JsonException e) { throw Bad(path, $"not valid JSON: {e.Message.Replace('\n', ' ')}"); }
        if (root is not JsonObject o) throw Bad(path, "not a JSON object");

        string? family = o["family"] is null ? null : String(path, o["family"], "family");
        List<ReportedSourceTensor>? tensors = null;
        if (o["source_tensors"] is { } st)
        {
            if (st is not JsonArray arr) throw Bad(path, "field 'source_tensors' must be an array");
            tensors = new List<ReportedSourceTensor>(arr.Count);
            for (int i = 0; i < arr.Count; i++)
            {
                string at = $"source_tensors[{i}]";
                if (arr[i] is not JsonObject t) throw Bad(path, $"field '{at}' must be an object");
                string name = String(path, t["name"], at + ".name");
                string dtypeName = String(path, t["dtype"], at + ".dtype");
                if (!DTypes.TryParse(dtypeName, out var dtype)) throw Bad(path, $"field '{at}.dtype' is not a safetensors dtype: '{dtypeName}'");
                if (t["shape"] is not JsonArray shape) throw Bad(path, $"field '{at}.shape' must be an array of dimensions");
                var dims = new long[shape.Count];
                for (int d = 0; d < dims.Length; d++) dims[d] = Dimension(path, shape[d], $"{at}.shape[{d}]");
                tensors.Add(new ReportedSourceTensor(name, dtype, dims));
            }
        }
        JsonObject? quant = o["source_quantization_config"] switch
        {
            null => null,
            JsonObject q => q,
            _ => throw Bad(path, "field 'source_quantization_config' must be an object or null"),
        };
        return new ConversionReport(family, tensors, quant);
    }

    static string String(string path, JsonNode? node, string field) =>
        node is JsonValue v && v.GetValueKind() == JsonValueKind.String ? v.GetValue<string>()
            : throw Bad(path, $"field '{field}' must be a string, not {Show(node)}");

    static long Dimension(string path, JsonNode? node, string field) =>
        node is JsonValue v && v.GetValueKind() == JsonValueKind.Number && v.TryGetValue(out long n) && n >= 0 ? n
            : throw Bad(path, $"field '{field}' must be a non-negative 64-bit integer, not {Show(node)}");

    static string Show(JsonNode? node)
    {
        string text = node?.ToJsonString() ?? "missing";
        return text.Length > 40 ? text[..40] + "..." : text;
    }

    static AdapterException Bad(string path, string what) =>
        new(AdapterErrorKind.Malformed, $"{path}: {what}") { File = path };
}
