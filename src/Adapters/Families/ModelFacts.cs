using System.Text.Json.Nodes;

namespace Mtp.Adapters;

/// <summary>Facts about a checkpoint read from its config.json (and, where the config is silent, from its tensor names).</summary>
/// <param name="Family">Family id (<see cref="Families.DeepSeekV3"/>, ...).</param>
/// <param name="ModelType">config <c>model_type</c>.</param>
/// <param name="NumHiddenLayers">L, the main decoder layers.</param>
/// <param name="MtpDepth">D, the MTP depths.</param>
/// <param name="NumExperts">E, routed experts per MoE layer (0: dense model).</param>
/// <param name="MoeLayers">For each decoder layer index 0..L+D-1 (MTP depth k at L+k): whether it is MoE.</param>
/// <param name="MtpFusionShared">Whether all MTP depths share one set of fusion modules (Qwen: yes, stored at depth 0).</param>
/// <param name="TextConfig">The config object holding the text fields (<c>text_config</c> for Qwen3.5).</param>
public sealed record ModelFacts(string Family, string ModelType, int NumHiddenLayers, int MtpDepth, int NumExperts,
    IReadOnlyList<bool> MoeLayers, bool MtpFusionShared, JsonObject TextConfig)
{
    /// <summary>Whether decoder layer <paramref name="hfLayer"/> (MTP depth k at L+k) is MoE.</summary>
    public bool IsMoe(int hfLayer) => hfLayer >= 0 && hfLayer < MoeLayers.Count && MoeLayers[hfLayer];
}

/// <summary>Recognizes a checkpoint's family from config.json.</summary>
public static class FamilyDetector
{
    /// <summary>The family id for a config (<c>model_type</c>, then <c>text_config.model_type</c>), or null.</summary>
    public static string? Detect(JsonObject config) => FamilyRegistry.Of(config)?.Id;

    internal static string? Str(JsonObject o, string key) => ConfigValues.Str(o, key);
}
