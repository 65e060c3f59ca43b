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
        // A read-only document, not a tree of nodes: the report of a 188,000-tensor conversion is 44 MB (a JsonNode tree
        // of it took 5.7 s and ~400 MB; this reads it in well under a second).
        JsonDocument doc;
        try { doc = JsonDocument.Parse(File.ReadAllBytes(path)); }
        catch (JsonException e) { throw Bad(path, $"not valid JSON: {e.Message.Replace('\n', ' ')}"); }
        using (doc)
        {
            JsonElement o = doc.RootElement;
            if (o.ValueKind != JsonValueKind.Object) throw Bad(path, "not a JSON object");
            string? family = Field(o, "family") is { } f ? String(path, f, "family") : null;
            List<ReportedSourceTensor>? tensors = null;
            if (Field(o, "source_tensors") is { } st)
            {
                if (st.ValueKind != JsonValueKind.Array) throw Bad(path, "field 'source_tensors' must be an array");
                tensors = new List<ReportedSourceTensor>(st.GetArrayLength());
                int i = 0;
                foreach (JsonElement t in st.EnumerateArray())
                {
                    string at = $"source_tensors[{i++}]";
                    if (t.ValueKind != JsonValueKind.Object) throw Bad(path, $"field '{at}' must be an object");
                    string name = String(path, Field(t, "name"), at + ".name");
                    string dtypeName = String(path, Field(t, "dtype"), at + ".dtype");
                    if (!DTypes.TryParse(dtypeName, out var dtype)) throw Bad(path, $"field '{at}.dtype' is not a safetensors dtype: '{dtypeName}'");
                    if (Field(t, "shape") is not { ValueKind: JsonValueKind.Array } shape) throw Bad(path, $"field '{at}.shape' must be an array of dimensions");
                    var dims = new long[shape.GetArrayLength()];
                    int d = 0;
                    foreach (JsonElement x in shape.EnumerateArray()) { dims[d] = Dimension(path, x, $"{at}.shape[{d}]"); d++; }
                    tensors.Add(new ReportedSourceTensor(name, dtype, dims));
                }
            }
            JsonObject? quant = Field(o, "source_quantization_config") switch
            {
                null => null,
                { ValueKind: JsonValueKind.Object } q => (JsonObject)JsonNode.Parse(q.GetRawText())!,
                _ => throw Bad(path, "field 'source_quantization_config' must be an object or null"),
            };
            return new ConversionReport(family, tensors, quant);
        }
    }

    // A field that is missing or JSON null reads as absent (as a JsonNode lookup did).
    static JsonElement? Field(JsonElement o, string name) =>
        o.TryGetProperty(name, out var v) && v.ValueKind != JsonValueKind.Null ? v : null;

    static string String(string path, JsonElement? node, string field) =>
        node is { ValueKind: JsonValueKind.String } v ? v.GetString()!
            : throw Bad(path, $"field '{field}' must be a string, not {Show(node)}");

    static long Dimension(string path, JsonElement node, string field) =>
        node.ValueKind == JsonValueKind.Number && node.TryGetInt64(out long n) && n >= 0 ? n
            : throw Bad(path, $"field '{field}' must be a non-negative 64-bit integer, not {Show(node)}");

    static string Show(JsonElement? node)
    {
        string text = node?.GetRawText() ?? "missing";
        return text.Length > 40 ? text[..40] + "..." : text;
    }

    static AdapterException Bad(string path, string what) =>
        new(AdapterErrorKind.Malformed, $"{path}: {what}") { File = path };
}
