using System.Text.Json.Nodes;

namespace Mtp.Adapters;

/// <summary>Every config.json <c>model_type</c> the toolkit knows: the only place these strings are spelled.</summary>
public static class ModelTypes
{
    /// <summary>DeepSeek-V3, V3.1 and R1.</summary>
    public const string DeepSeekV3 = "deepseek_v3";
    /// <summary>DeepSeek-V3.2 (V3.2-Exp, V3.2): V3 with the sparse-attention indexer.</summary>
    public const string DeepSeekV32 = "deepseek_v32";
    /// <summary>DeepSeek-V4 (Flash, Base, Pro).</summary>
    public const string DeepSeekV4 = "deepseek_v4";
    /// <summary>Qwen3.5 MoE (top level of the multimodal config).</summary>
    public const string Qwen35Moe = "qwen3_5_moe";
    /// <summary>Qwen3.5 dense.</summary>
    public const string Qwen35 = "qwen3_5";
    /// <summary>Qwen3.5 MoE's nested <c>text_config</c>.</summary>
    public const string Qwen35MoeText = "qwen3_5_moe_text";
    /// <summary>Qwen3.5 dense's nested <c>text_config</c>.</summary>
    public const string Qwen35Text = "qwen3_5_text";
    /// <summary>Qwen3-Next.</summary>
    public const string Qwen3Next = "qwen3_next";
    /// <summary>GLM-4.5, 4.6 and 4.7 (and GLM-4.5-Air).</summary>
    public const string Glm4Moe = "glm4_moe";
    /// <summary>GLM-5 and GLM-5.1 (MoE with DeepSeek-style sparse attention).</summary>
    public const string GlmMoeDsa = "glm_moe_dsa";
    /// <summary>Xiaomi MiMo-7B (Base, RL, SFT).</summary>
    public const string Mimo = "mimo";
    /// <summary>Xiaomi MiMo-V2-Flash (and its Base).</summary>
    public const string MimoV2Flash = "mimo_v2_flash";
}

/// <summary>One family's identity: its id and the config.json <c>model_type</c> values that name it.</summary>
/// <param name="Id">Family id (<see cref="Families.DeepSeekV3"/>, ...).</param>
/// <param name="ModelTypes">Every <c>model_type</c> (top level or <c>text_config</c>) of this family; the first is the one written.</param>
public sealed record FamilyIdentity(string Id, IReadOnlyList<string> ModelTypes)
{
    /// <summary>The <c>model_type</c> a checkpoint of this family is written with.</summary>
    public string ModelType => ModelTypes[0];

    /// <summary>Other names a user may give for the family (lower case, '-' for '_'), besides <see cref="Id"/>.</summary>
    public IReadOnlyList<string> Aliases { get; init; } = Array.Empty<string>();
}

/// <summary>
/// The only table from config.json's <c>model_type</c> to a family, and from a family id to its module (facts,
/// quantization scheme, layout detection, rule table). Adapters, inspect, synth and the model registry all read it, so a
/// new family (or a new model_type spelling of an old one) is added here once.
/// </summary>
public static class FamilyRegistry
{
    /// <summary>DeepSeek-V3 (V3, V3.1, R1 configs).</summary>
    public static readonly FamilyIdentity DeepSeekV3 = new(Families.DeepSeekV3, new[] { ModelTypes.DeepSeekV3 }) { Aliases = new[] { "deepseekv3" } };
    /// <summary>DeepSeek-V3.2.</summary>
    public static readonly FamilyIdentity DeepSeekV32 = new(Families.DeepSeekV32, new[] { ModelTypes.DeepSeekV32 }) { Aliases = new[] { "deepseekv32", "deepseek-v32", "deepseek-v3.2-exp" } };
    /// <summary>DeepSeek-V4.</summary>
    public static readonly FamilyIdentity DeepSeekV4 = new(Families.DeepSeekV4, new[] { ModelTypes.DeepSeekV4 }) { Aliases = new[] { "deepseekv4", "deepseek-v4-flash" } };
    /// <summary>Qwen3.5, MoE and dense, with the text model types of its nested <c>text_config</c>.</summary>
    public static readonly FamilyIdentity Qwen35 = new(Families.Qwen35, new[] { ModelTypes.Qwen35Moe, ModelTypes.Qwen35, ModelTypes.Qwen35MoeText, ModelTypes.Qwen35Text })
    { Aliases = new[] { "qwen3-5", "qwen3-5-moe", "qwen3.5-moe" } };
    /// <summary>Qwen3-Next.</summary>
    public static readonly FamilyIdentity Qwen3Next = new(Families.Qwen3Next, new[] { ModelTypes.Qwen3Next });
    /// <summary>GLM-4.5 / 4.6 / 4.7.</summary>
    public static readonly FamilyIdentity Glm45 = new(Families.Glm45, new[] { ModelTypes.Glm4Moe })
    { Aliases = new[] { "glm4-moe", "glm-4.6", "glm-4.7", "glm-4.5-air", "glm4.5" } };
    /// <summary>GLM-5 / 5.1.</summary>
    public static readonly FamilyIdentity Glm5 = new(Families.Glm5, new[] { ModelTypes.GlmMoeDsa }) { Aliases = new[] { "glm-moe-dsa", "glm-5.1", "glm5" } };
    /// <summary>Xiaomi MiMo-7B.</summary>
    public static readonly FamilyIdentity Mimo = new(Families.Mimo, new[] { ModelTypes.Mimo }) { Aliases = new[] { "mimo-7b" } };
    /// <summary>Xiaomi MiMo-V2-Flash.</summary>
    public static readonly FamilyIdentity MimoV2Flash = new(Families.MimoV2Flash, new[] { ModelTypes.MimoV2Flash }) { Aliases = new[] { "mimo-v2-flash-base" } };

    /// <summary>Every family, in the order they are listed to users.</summary>
    public static IReadOnlyList<FamilyIdentity> All { get; } = new[] { DeepSeekV3, DeepSeekV32, DeepSeekV4, Qwen35, Qwen3Next, Glm45, Glm5, Mimo, MimoV2Flash };

    /// <summary>Every family's module, in the order of <see cref="All"/>. Built here (not in the modules) so that no
    /// static initializer of a module runs before the identities above exist.</summary>
    public static IReadOnlyList<FamilyModule> Modules { get; } = new FamilyModule[]
    {
        new DeepSeekV3Family(DeepSeekV3), new DeepSeekV3Family(DeepSeekV32, indexer: true), new DeepSeekV4Family(DeepSeekV4),
        new QwenFamily(Qwen35, next: false), new QwenFamily(Qwen3Next, next: true), new Glm45Family(Glm45),
        new DeepSeekV3Family(Glm5, indexer: true), new MimoFamily(Mimo), new MimoV2FlashFamily(MimoV2Flash),
    };

    /// <summary>The family with this id, or null.</summary>
    public static FamilyIdentity? ById(string id) => All.FirstOrDefault(f => f.Id == id);

    /// <summary>The module of the family with this id, or null.</summary>
    public static FamilyModule? Module(string id) => Modules.FirstOrDefault(m => m.Id == id);

    /// <summary>The family a <c>model_type</c> names, or null.</summary>
    public static FamilyIdentity? ByModelType(string? modelType) =>
        modelType == null ? null : All.FirstOrDefault(f => f.ModelTypes.Contains(modelType));

    /// <summary>The family of a config: its <c>model_type</c>, then <c>text_config.model_type</c>; null when neither is known.</summary>
    public static FamilyIdentity? Of(JsonObject config)
    {
        string? top = ConfigValues.Str(config, "model_type");
        string? text = config["text_config"] is JsonObject tc ? ConfigValues.Str(tc, "model_type") : null;
        return ByModelType(top) ?? ByModelType(text);
    }

    /// <summary>The quantization scheme of a config's family (<see cref="Of"/>), or null.</summary>
    public static QuantScheme? SchemeOf(JsonObject config) => Of(config) is { } f ? Module(f.Id)?.Quant : null;

    /// <summary>The family id a user-given name means (the id, an alias, or a model_type spelling), or null.</summary>
    public static FamilyIdentity? ByName(string name)
    {
        string n = name.Trim().ToLowerInvariant().Replace('_', '-');
        return All.FirstOrDefault(f => f.Id == n || f.Aliases.Contains(n));
    }

    /// <summary>
    /// The scale tensor names a quantized weight may have, one per distinct scheme of the registered families, in registry
    /// order, then compressed-tensors' (a naming any family's FP8 export may use): for code that must find a scale without knowing the family (verify, inspect, the convention check).
    /// </summary>
    public static IEnumerable<string> ScaleNameCandidates(string weight) =>
        Modules.Select(m => m.Quant.Naming).Append(ScaleNaming.WeightScale).Distinct().Select(n => n.ScaleNameOf(weight)).Distinct(StringComparer.Ordinal);
}
