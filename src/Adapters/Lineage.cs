using System.Text.Json;
using System.Text.Json.Nodes;
using Mtp.SafeTensors;

namespace Mtp.Adapters;

/// <summary>
/// Where a training-layout checkpoint came from: the part of its conversion.json that describes the HF source
/// (<c>family</c>, <c>source</c>, <c>source_quantization_config</c>, <c>source_tensors</c>). <c>convert --to hf</c>
/// without <c>--reference</c> returns to that format from it, so a checkpoint derived from a converted one (e.g. by
/// <c>mtp train --out</c>) carries it on.
/// </summary>
public static class Lineage
{
    /// <summary>The conversion.json keys that describe the HF source.</summary>
    public static readonly IReadOnlyList<string> SourceKeys = new[] { "family", "source", "source_quantization_config", "source_tensors" };

    /// <summary>
    /// The source part of <paramref name="dir"/>'s conversion.json (only the <see cref="SourceKeys"/> it has), or null
    /// when it has no conversion.json or none of those keys.
    /// </summary>
    /// <exception cref="AdapterException">conversion.json is malformed (see <see cref="ConversionReport.Read"/>).</exception>
    public static JsonObject? Read(string dir)
    {
        string path = Path.Combine(dir, Converter.ReportFileName);
        // The fields export reads back are checked here already, so a trained checkpoint never carries a broken record.
        if (ConversionReport.Read(dir) is null) return null;
        var report = (JsonObject)JsonNode.Parse(File.ReadAllText(path))!;
        var lineage = new JsonObject();
        foreach (string key in SourceKeys)
            if (report.TryGetPropertyValue(key, out var v)) lineage[key] = v?.DeepClone();
        return lineage.Count > 0 ? lineage : null;
    }

    /// <summary>
    /// Writes conversion.json into <paramref name="dir"/> for a checkpoint derived from another: <paramref name="tool"/>,
    /// the source's <paramref name="lineage"/> (when known; without it <c>convert --to hf</c> asks for a reference or a
    /// dtype) and <paramref name="details"/> under <paramref name="detailsKey"/>.
    /// </summary>
    public static void WriteDerived(string dir, string tool, JsonObject? lineage, string detailsKey, JsonObject details)
    {
        var report = new JsonObject { ["tool"] = tool };
        if (lineage != null)
            foreach (var kv in lineage) report[kv.Key] = kv.Value?.DeepClone();
        report[detailsKey] = details.DeepClone();
        OutputTransaction.WriteAllText(Path.Combine(dir, Converter.ReportFileName), report.ToJsonString(new JsonSerializerOptions { WriteIndented = true }) + "\n");
    }
}
