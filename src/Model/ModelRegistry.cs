using System.Text.Json.Nodes;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Mtp.Model;

/// <summary>Which model class loads which config.json <c>model_type</c>.</summary>
public static class ModelRegistry
{
    // One line per family. Qwen3.5 nests its text config, so text_config.model_type is looked up too.
    static readonly Dictionary<string, Func<Mtp.SafeTensors.ITensorSource, Device, ScalarType, MtpModel>> Loaders = new(StringComparer.Ordinal)
    {
        ["deepseek_v3"] = DeepSeekV3Model.Load,
        ["deepseek_v4"] = DeepSeekV4Model.Load,
        ["qwen3_5_moe"] = Qwen.QwenModel.Load,
        ["qwen3_5"] = Qwen.QwenModel.Load,
        ["qwen3_next"] = Qwen.QwenModel.Load,
    };

    /// <summary>model_type values that have a model.</summary>
    public static IReadOnlyCollection<string> ModelTypes => Loaders.Keys;

    /// <summary>
    /// Reads config.json's model_type (top level, then text_config) and loads with that family's model, from the training
    /// layout or from a Hugging Face checkpoint (see <see cref="ModelSource.Open"/>).
    /// </summary>
    public static MtpModel Load(string dir, Device device, ScalarType dtype)
    {
        string path = Path.Combine(dir, "config.json");
        if (!File.Exists(path)) throw new ModelConfigException($"{path}: not found (a training-layout checkpoint has its config.json)");
        JsonObject cfg;
        try { cfg = JsonNode.Parse(File.ReadAllText(path)) as JsonObject ?? throw new ModelConfigException($"{path}: not a JSON object"); }
        catch (System.Text.Json.JsonException e) { throw new ModelConfigException($"{path}: not valid JSON: {e.Message}"); }
        string? top = cfg["model_type"] is JsonValue tv && tv.TryGetValue(out string? ts) ? ts : null;
        string? text = (cfg["text_config"] as JsonObject)?["model_type"] is JsonValue xv && xv.TryGetValue(out string? xs) ? xs : null;
        foreach (string? t in new[] { top, text })
            if (t is not null && Loaders.TryGetValue(t, out var load))
            {
                // The config readers see only the JSON; the message is worth more with the file it came from.
                try
                {
                    using var src = ModelSource.Open(dir, dtype);
                    return load(src, device, dtype);
                }
                catch (ModelConfigException e) when (e.Message.StartsWith("config.json", StringComparison.Ordinal))
                {
                    throw new ModelConfigException(path + e.Message["config.json".Length..]);
                }
            }
        throw new ModelConfigException($"{path}: model_type '{top ?? text ?? "(none)"}' has no model (supported: {string.Join(", ", Loaders.Keys)})");
    }
}
