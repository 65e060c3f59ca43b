using System.Text.Json.Nodes;

namespace Mtp.Adapters;

/// <summary>The supported family ids, and shortcuts to their modules in <see cref="FamilyRegistry"/>.</summary>
public static class Families
{
    /// <summary>DeepSeek-V3 (also V3.1 / R1 layouts).</summary>
    public const string DeepSeekV3 = "deepseek-v3";
    /// <summary>DeepSeek-V3.2 (V3 with the sparse-attention indexer).</summary>
    public const string DeepSeekV32 = "deepseek-v3.2";
    /// <summary>DeepSeek-V4 (V4-Flash, Base/Pro scale variants, legacy MTP layout).</summary>
    public const string DeepSeekV4 = "deepseek-v4";
    /// <summary>Qwen3.5 (<c>qwen3_5</c>, <c>qwen3_5_moe</c>).</summary>
    public const string Qwen35 = "qwen3.5";
    /// <summary>Qwen3-Next.</summary>
    public const string Qwen3Next = "qwen3-next";
    /// <summary>GLM-4.5 / 4.6 / 4.7 (<c>glm4_moe</c>).</summary>
    public const string Glm45 = "glm-4.5";
    /// <summary>GLM-5 / 5.1 (<c>glm_moe_dsa</c>): DeepSeek-V3.2's layout under GLM's model_type.</summary>
    public const string Glm5 = "glm-5";
    /// <summary>Xiaomi MiMo (<c>mimo</c>): Qwen2 main model, MTP under <c>model.mtp_layers.{k}</c>.</summary>
    public const string Mimo = "mimo";
    /// <summary>Xiaomi MiMo-V2-Flash (<c>mimo_v2_flash</c>): hybrid-attention MoE, MTP under <c>model.mtp.layers.{k}</c>.</summary>
    public const string MimoV2Flash = "mimo-v2-flash";

    /// <summary>All family ids.</summary>
    public static IReadOnlyList<string> All { get; } = FamilyRegistry.All.Select(f => f.Id).ToArray();

    /// <summary>Normalizes a user-given family name (accepts model_type spellings too); null if unknown.</summary>
    public static string? Normalize(string name) => FamilyRegistry.ByName(name)?.Id;

    /// <summary>The module of <paramref name="family"/>.</summary>
    /// <exception cref="AdapterException">Not a known family id.</exception>
    public static FamilyModule Module(string family) => FamilyRegistry.Module(family)
        ?? throw new AdapterException(AdapterErrorKind.Usage, $"unknown family '{family}' (known: {string.Join(", ", All)})");

    /// <summary>The facts of a config for <paramref name="family"/> (see <see cref="FamilyModule.ReadFacts"/>).</summary>
    public static ModelFacts ReadFacts(string family, JsonObject config, IEnumerable<string>? tensorNames = null) =>
        Module(family).ReadFacts(config, tensorNames);

    /// <summary>The family's rule table for a config (see <see cref="FamilyModule.BuildTable"/>).</summary>
    public static RuleTable BuildTable(string family, JsonObject config, IReadOnlyCollection<string>? hfNames = null, IReadOnlyCollection<string>? nativeNames = null) =>
        Module(family).BuildTable(config, hfNames, nativeNames);
}
