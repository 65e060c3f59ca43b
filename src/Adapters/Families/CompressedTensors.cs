using System.Text.Json.Nodes;
using Mtp.Quant;
using Mtp.SafeTensors;

namespace Mtp.Adapters;

/// <summary>
/// FP8 weights as the compressed-tensors library stores them (<c>quant_method: "compressed-tensors"</c>, format
/// <c>float-quantized</c>; GLM-4.5-FP8 and llm-compressor's FP8 exports): <c>x.weight</c> in F8_E4M3 beside
/// <c>x.weight_scale</c>, a multiplier like HF's <c>weight_scale_inv</c>. Strategy <c>channel</c> has one scale per
/// output row (shape [rows, 1]); strategy <c>block</c> has a scale per <c>block_structure</c> tile. Other schemes
/// (per-tensor or per-group scales, integer or 4-bit weights, static activation scales) are refused by name.
/// </summary>
public static class CompressedTensors
{
    /// <summary>Whether <paramref name="quantizationConfig"/> is a compressed-tensors one.</summary>
    public static bool Is(JsonObject? quantizationConfig) =>
        quantizationConfig is not null && ConfigValues.Str(quantizationConfig, "quant_method") == "compressed-tensors";

    /// <summary>The family scheme with compressed-tensors' scale names when <paramref name="config"/> states that method.</summary>
    public static QuantScheme SchemeFor(JsonObject config, QuantScheme family) =>
        Is(Converter.QuantConfigOf(config)) ? family with { Naming = ScaleNaming.WeightScale, ScaleDType = DType.BF16 } : family;

    /// <summary>
    /// The FP8 weight block the config states: <see cref="BlockSize.PerRow"/> for strategy <c>channel</c>, the
    /// <c>block_structure</c> for strategy <c>block</c>.
    /// </summary>
    /// <exception cref="AdapterException">A scheme this reader does not convert, named in one line.</exception>
    public static BlockSize BlockOf(JsonObject quantizationConfig)
    {
        const string where = "config.json: quantization_config (compressed-tensors)";
        if (quantizationConfig["config_groups"] is not JsonObject groups || groups.Count == 0)
            throw new AdapterException(AdapterErrorKind.Malformed, $"{where} has no config_groups");
        BlockSize? block = null;
        foreach (var (name, node) in groups)
        {
            if (node is not JsonObject g || g["weights"] is not JsonObject w)
                throw new AdapterException(AdapterErrorKind.Malformed, $"{where}: group '{name}' has no weights object");
            string format = ConfigValues.Str(g, "format") ?? ConfigValues.Str(quantizationConfig, "format") ?? "";
            int? bits = ConfigValues.Int(w, "num_bits");
            string type = ConfigValues.Str(w, "type") ?? "";
            if (bits != 8 || type != "float" || format is not ("float-quantized" or "naive-quantized" or ""))
                throw Unsupported(where, name, $"{bits?.ToString() ?? "?"}-bit {type} weights in format '{format}' (only 8-bit float, float-quantized, is read)");
            if (g["input_activations"] is JsonObject a && a["dynamic"] is JsonValue d && d.TryGetValue(out bool dynamic) && !dynamic)
                throw Unsupported(where, name, "static activation scales (input_scale tensors)");
            BlockSize b = ConfigValues.Str(w, "strategy") switch
            {
                "channel" => BlockSize.PerRow,
                "block" => StructureOf(w, where, name),
                var s => throw Unsupported(where, name, $"weight strategy '{s ?? "(none)"}' (channel and block are read)"),
            };
            if (block is { } prev && prev != b)
                throw Unsupported(where, name, "config groups with different weight blocks");
            block = b;
        }
        return block!.Value;
    }

    static BlockSize StructureOf(JsonObject weights, string where, string group)
    {
        if (weights["block_structure"] is JsonArray { Count: 2 } s && s[0] is JsonValue r && r.TryGetValue(out int rows) && rows > 0
            && s[1] is JsonValue c && c.TryGetValue(out int cols) && cols > 0)
            return new BlockSize(rows, cols);
        throw new AdapterException(AdapterErrorKind.Malformed, $"{where}: group '{group}': strategy 'block' needs block_structure as two positive integers");
    }

    static AdapterException Unsupported(string where, string group, string what) =>
        new(AdapterErrorKind.Malformed, $"{where}: group '{group}': {what} cannot be converted");
}
