using System.Text.Json;
using System.Text.Json.Nodes;
using Mtp.SafeTensors;

namespace Mtp.Adapters;

/// <summary>What <see cref="Converter.PlanNative"/> decided: the output tensors and how each is made, and what was left out.</summary>
/// <param name="Family">The family id.</param>
/// <param name="InDir">The HF checkpoint planned from.</param>
/// <param name="Outputs">Every training-layout tensor, in output order, with its pieces.</param>
/// <param name="Dropped">HF tensors left out on purpose (tied MTP copies), with the reason.</param>
/// <param name="Carried">Unknown tensors carried through (<see cref="ConvertOptions.AllowUnknown"/>).</param>
/// <param name="Config">The training layout's config.json.</param>
/// <param name="SourceConfig">The HF config.json.</param>
internal sealed record NativePlan(string Family, string InDir, List<PlannedTensor> Outputs, List<(string, string)> Dropped, List<string> Carried,
    JsonObject Config, JsonObject SourceConfig)
{
    /// <summary>
    /// The record of the HF source that conversion.json carries (<see cref="Lineage.SourceKeys"/>): family, source summary,
    /// its quantization config and every source tensor's name, dtype, shape and file. Export goes back to the source format
    /// from it.
    /// </summary>
    public JsonObject SourceRecord(Checkpoint src) => new()
    {
        ["family"] = Family,
        ["source"] = JsonSerializer.SerializeToNode(Converter.SourceSummary(InDir, src)),
        ["source_quantization_config"] = (SourceConfig["quantization_config"] ?? (SourceConfig["text_config"] as JsonObject)?["quantization_config"])?.DeepClone(),
        ["source_tensors"] = new JsonArray(src.Tensors.Select(t => (JsonNode)new JsonObject
        {
            ["name"] = t.Name, ["dtype"] = t.Info.DType.Name(), ["shape"] = new JsonArray(t.Info.Shape.Select(d => (JsonNode)d).ToArray()),
            ["file"] = Path.GetFileName(t.File.Path),
        }).ToArray()),
    };
}
