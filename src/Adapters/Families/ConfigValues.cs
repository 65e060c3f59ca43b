using System.Text.Json.Nodes;

namespace Mtp.Adapters;

/// <summary>Strict reads of config.json values shared by the family modules.</summary>
static class ConfigValues
{
    /// <summary>The object holding the text fields (<c>text_config</c> for Qwen3.5).</summary>
    public static JsonObject TextConfig(JsonObject config) => config["text_config"] as JsonObject ?? config;

    /// <summary>A string value, or null when absent or not a string.</summary>
    public static string? Str(JsonObject o, string key) => o[key] is JsonValue v && v.TryGetValue(out string? s) ? s : null;

    /// <summary>Whether <paramref name="key"/> is the JSON value true.</summary>
    public static bool True(JsonObject o, string key) => o[key] is JsonValue v && v.TryGetValue(out bool b) && b;

    // An absent or null key is null; any other value must be a 32-bit integer (a float, a string or an
    // out-of-range number is malformed input, never a silently wrapped or ignored value).
    /// <summary>An integer value, or null when absent.</summary>
    public static int? Int(JsonObject o, string key) => o[key] switch
    {
        null => null,
        JsonValue v when v.TryGetValue(out int x) => x,
        var n => throw new AdapterException(AdapterErrorKind.Malformed, $"config.json: '{key}' must be an integer, not {Shown(n)}"),
    };

    /// <summary>A count (layers, depths, experts): absent is null, otherwise a non-negative integer.</summary>
    public static int? Count(JsonObject o, string key) => Int(o, key) is int n && n < 0
        ? throw new AdapterException(AdapterErrorKind.Malformed, $"config.json: '{key}' must not be negative, not {n}")
        : Int(o, key);

    /// <summary>An integer the family cannot do without.</summary>
    public static int ReqInt(JsonObject o, string key, string family) => Int(o, key)
        ?? throw new AdapterException(AdapterErrorKind.Malformed, $"config.json: {family} needs an integer '{key}'");

    /// <summary>A value as a message shows it (cut at 40 characters).</summary>
    public static string Shown(JsonNode n)
    {
        string t = n.ToJsonString();
        return t.Length > 40 ? t[..40] + "..." : t;
    }
}
