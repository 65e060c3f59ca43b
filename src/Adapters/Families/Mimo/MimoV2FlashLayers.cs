using System.Text.Json.Nodes;

namespace Mtp.Adapters;

/// <summary>
/// MiMo-V2-Flash's per-layer kinds from config.json: which main layers use sliding-window attention
/// (<c>hybrid_layer_pattern</c>, 1 = sliding, 0 = full; or transformers' spelling <c>layer_types</c>) and which are MoE
/// (<c>moe_layer_freq</c>, 1 = MoE; or <c>mlp_layer_types</c> "sparse"/"dense"). MTP blocks are sliding-window with a
/// dense MLP (vLLM <c>mimo_v2_flash_mtp.py</c>). Attention sinks follow <c>add_swa_attention_sink_bias</c> /
/// <c>add_full_attention_sink_bias</c>.
/// </summary>
sealed class MimoV2FlashLayers
{
    readonly IReadOnlyList<bool> sliding;
    readonly bool swaSink, fullSink;

    MimoV2FlashLayers(IReadOnlyList<bool> sliding, bool swaSink, bool fullSink) => (this.sliding, this.swaSink, this.fullSink) = (sliding, swaSink, fullSink);

    /// <summary>Reads the attention kinds of <paramref name="layers"/> main layers from <paramref name="tc"/>.</summary>
    public static MimoV2FlashLayers Read(JsonObject tc, int layers) =>
        new(PerLayer(tc, layers, "hybrid_layer_pattern", "layer_types", "sliding_attention", "full_attention") ?? Enumerable.Repeat(false, layers).ToList(),
            ConfigValues.True(tc, "add_swa_attention_sink_bias"), ConfigValues.True(tc, "add_full_attention_sink_bias"));

    /// <summary>Which of <paramref name="layers"/> main layers are MoE (none when the config names no layer kinds).</summary>
    public static IReadOnlyList<bool> MoeMain(JsonObject tc, int layers) =>
        PerLayer(tc, layers, "moe_layer_freq", "mlp_layer_types", "sparse", "dense") ?? Enumerable.Repeat(false, layers).ToList();

    /// <summary>Whether the attention of <paramref name="x"/> has <c>attention_sink_bias</c>.</summary>
    public bool HasSink(LayerContext x) => x.IsMtp || (x.HfLayer < sliding.Count && sliding[x.HfLayer]) ? swaSink : fullSink;

    /// <summary>Whether main layer <paramref name="i"/> uses sliding-window attention.</summary>
    public bool IsSliding(int i) => i >= 0 && i < sliding.Count && sliding[i];

    /// <summary>
    /// <see cref="RowChunkRule"/> of the release: a full-attention layer's <c>self_attn.k_proj.weight</c>
    /// (<c>num_key_value_heads</c> x <c>head_dim</c> rows) is blocked per KV head, so its chunk is <c>head_dim</c> rows.
    /// Sliding-window layers (<c>swa_*</c> heads, MTP blocks included) and every other weight are blocked uniformly.
    /// Why: src/Adapters/README.md, "MiMo-V2-Flash".
    /// </summary>
    public static int FullAttentionKeyHeadRows(JsonObject tc, string hfWeight, int rows)
    {
        const string pre = "model.layers.", post = ".self_attn.k_proj.weight";
        if (!hfWeight.StartsWith(pre, StringComparison.Ordinal) || !hfWeight.EndsWith(post, StringComparison.Ordinal)
            || !int.TryParse(hfWeight.AsSpan(pre.Length, hfWeight.Length - pre.Length - post.Length), System.Globalization.NumberStyles.None,
                System.Globalization.CultureInfo.InvariantCulture, out int i))
            return 0;
        int layers = ConfigValues.Int(tc, "num_hidden_layers") ?? 0;
        if (i >= layers || Read(tc, layers).IsSliding(i)) return 0;
        int heads = ConfigValues.Int(tc, "num_key_value_heads") ?? 0, headDim = ConfigValues.Int(tc, "head_dim") ?? 0;
        return heads > 1 && headDim > 0 && rows == heads * headDim ? headDim : 0;
    }

    // A per-layer flag list: 0/1 integers under intKey, or two strings under strKey; one entry per main layer.
    static List<bool>? PerLayer(JsonObject tc, int layers, string intKey, string strKey, string yes, string no)
    {
        string key = tc[intKey] is not null ? intKey : strKey;
        if (tc[key] is null) return null;
        if (tc[key] is not JsonArray a)
            throw new AdapterException(AdapterErrorKind.Malformed, $"config.json: '{key}' must be an array with one entry per layer, not {ConfigValues.Shown(tc[key]!)}");
        if (a.Count != layers)
            throw new AdapterException(AdapterErrorKind.Malformed, $"config.json: '{key}' has {a.Count} entries for {layers} layers");
        var flags = new List<bool>(layers);
        foreach (JsonNode? n in a)
            flags.Add(Flag(n, key == intKey, yes, no) ?? throw new AdapterException(AdapterErrorKind.Malformed,
                $"config.json: '{key}' entries must be {(key == intKey ? "0 or 1" : $"\"{yes}\" or \"{no}\"")}, not {(n is null ? "null" : ConfigValues.Shown(n))}"));
        return flags;
    }

    static bool? Flag(JsonNode? n, bool integers, string yes, string no)
    {
        if (n is not JsonValue v) return null;
        if (integers) return v.TryGetValue(out int i) && i is 0 or 1 ? i == 1 : null;
        return v.TryGetValue(out string? s) && (s == yes || s == no) ? s == yes : null;
    }
}
