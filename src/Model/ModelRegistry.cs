using System.Text.Json.Nodes;
using Mtp.Adapters;
using Mtp.SafeTensors;
using static TorchSharp.torch;

namespace Mtp.Model;

/// <summary>
/// Which model class loads which family. The family of a config.json comes from <see cref="FamilyRegistry"/>, the only
/// model_type table (its <c>model_type</c>, then <c>text_config.model_type</c>, as Qwen3.5 nests its text config).
/// </summary>
public static class ModelRegistry
{
    // One line per family, by family id.
    static readonly Dictionary<string, Func<ITensorSource, Device, ScalarType, MtpModel>> Loaders = new(StringComparer.Ordinal)
    {
        [FamilyRegistry.DeepSeekV3.Id] = DeepSeekV3Model.Load,
        [FamilyRegistry.DeepSeekV32.Id] = DeepSeekV3Model.Load,
        [FamilyRegistry.DeepSeekV4.Id] = DeepSeekV4Model.Load,
        [FamilyRegistry.Glm45.Id] = DeepSeekV3Model.Load,
        [FamilyRegistry.Glm5.Id] = DeepSeekV3Model.Load,
        [FamilyRegistry.Qwen35.Id] = Qwen.QwenModel.Load,
        [FamilyRegistry.Qwen3Next.Id] = Qwen.QwenModel.Load,
    };

    /// <summary>The families that have a model.</summary>
    public static IReadOnlyList<FamilyIdentity> Families { get; } = FamilyRegistry.All.Where(f => Loaders.ContainsKey(f.Id)).ToArray();

    /// <summary>model_type values that have a model (every spelling of <see cref="Families"/>).</summary>
    public static IReadOnlyCollection<string> ModelTypes { get; } = Families.SelectMany(f => f.ModelTypes).ToArray();

    /// <summary>
    /// Reads config.json's family (<see cref="FamilyRegistry.Of"/>) and loads with that family's model, from the training
    /// layout or from a Hugging Face checkpoint (see <see cref="ModelSource.Open"/>).
    /// </summary>
    public static MtpModel Load(string dir, Device device, ScalarType dtype)
    {
        string path = Path.Combine(dir, "config.json");
        if (!File.Exists(path)) throw new ModelConfigException($"{path}: not found (a training-layout checkpoint has its config.json)");
        JsonObject cfg = ConfigReader.ReadFile(path);
        if (FamilyRegistry.Of(cfg) is { } family && Loaders.TryGetValue(family.Id, out var load))
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
        string? top = ModelTypeOf(cfg), text = cfg["text_config"] is JsonObject tc ? ModelTypeOf(tc) : null;
        throw new ModelConfigException($"{path}: model_type '{top ?? text ?? "(none)"}' has no model (supported: {string.Join(", ", ModelTypes)})");
    }

    static string? ModelTypeOf(JsonObject o) => o["model_type"] is JsonValue v && v.TryGetValue(out string? s) ? s : null;
}
