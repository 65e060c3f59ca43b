namespace Mtp.Adapters;

/// <summary>DeepSeek-V4's on-disk layout variants.</summary>
public static class DeepSeekV4Layout
{
    /// <summary>
    /// Whether the MTP depths use the legacy layout (<c>model.layers.{L+k}.*</c> plus <c>layers.{L+k}.{eh_proj,...}</c>)
    /// instead of <c>mtp.{k}.*</c>: decided by the HF names when known, else by the training names (a fused
    /// <c>eh_proj</c> at depth 0 came from the legacy layout).
    /// </summary>
    public static bool IsLegacyMtp(ModelFacts f, IReadOnlyCollection<string>? hf, IReadOnlyCollection<string>? native)
    {
        if (f.MtpDepth == 0) return false;
        if (hf != null)
        {
            string legacyPrefix = $"model.layers.{f.NumHiddenLayers}.", legacyFusion = $"layers.{f.NumHiddenLayers}.eh_proj.weight";
            if (hf.Any(n => n.StartsWith("mtp.0.", StringComparison.Ordinal))) return false;
            return hf.Contains(legacyFusion) || hf.Any(n => n.StartsWith(legacyPrefix, StringComparison.Ordinal));
        }
        return native != null && native.Contains("mtp.layers.0.eh_proj.weight");
    }
}
