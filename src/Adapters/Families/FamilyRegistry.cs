using System.Text.Json.Nodes;

namespace Mtp.Adapters;

/// <summary>One family's identity: its id and the config.json <c>model_type</c> values that name it.</summary>
/// <param name="Id">Family id (<see cref="Families.DeepSeekV3"/>, ...).</param>
/// <param name="ModelTypes">Every <c>model_type</c> (top level or <c>text_config</c>) of this family; the first is the one written.</param>
public sealed record FamilyIdentity(string Id, IReadOnlyList<string> ModelTypes)
{
    /// <summary>The <c>model_type</c> a checkpoint of this family is written with.</summary>
    public string ModelType => ModelTypes[0];
}

/// <summary>
/// The only table from config.json's <c>model_type</c> to a family. Adapters, inspect, synth and the model registry all
/// read it, so a new family (or a new model_type spelling of an old one) is added here once.
/// </summary>
public static class FamilyRegistry
{
    /// <summary>DeepSeek-V3 (V3, V3.1, R1 configs).</summary>
    public static readonly FamilyIdentity DeepSeekV3 = new(Families.DeepSeekV3, new[] { "deepseek_v3" });
    /// <summary>DeepSeek-V4.</summary>
    public static readonly FamilyIdentity DeepSeekV4 = new(Families.DeepSeekV4, new[] { "deepseek_v4" });
    /// <summary>Qwen3.5, MoE and dense, with the text model types of its nested <c>text_config</c>.</summary>
    public static readonly FamilyIdentity Qwen35 = new(Families.Qwen35, new[] { "qwen3_5_moe", "qwen3_5", "qwen3_5_moe_text", "qwen3_5_text" });
    /// <summary>Qwen3-Next.</summary>
    public static readonly FamilyIdentity Qwen3Next = new(Families.Qwen3Next, new[] { "qwen3_next" });

    /// <summary>Every family, in the order they are listed to users.</summary>
    public static IReadOnlyList<FamilyIdentity> All { get; } = new[] { DeepSeekV3, DeepSeekV4, Qwen35, Qwen3Next };

    /// <summary>The family with this id, or null.</summary>
    public static FamilyIdentity? ById(string id) => All.FirstOrDefault(f => f.Id == id);

    /// <summary>The family a <c>model_type</c> names, or null.</summary>
    public static FamilyIdentity? ByModelType(string? modelType) =>
        modelType == null ? null : All.FirstOrDefault(f => f.ModelTypes.Contains(modelType));

    /// <summary>The family of a config: its <c>model_type</c>, then <c>text_config.model_type</c>; null when neither is known.</summary>
    public static FamilyIdentity? Of(JsonObject config)
    {
        string? top = Str(config, "model_type");
        string? text = config["text_config"] is JsonObject tc ? Str(tc, "model_type") : null;
        return ByModelType(top) ?? ByModelType(text);
    }

    static string? Str(JsonObject o, string key) => o[key] is JsonValue v && v.TryGetValue(out string? s) ? s : null;
}
