using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using Mtp.SafeTensors;

namespace Mtp.Model;

/// <summary>
/// Reads a family's config.json fields, collecting every missing field as a problem so one error lists
/// them all (the families' config classes validate on top of it).
/// </summary>
public sealed class ConfigReader(JsonObject fields)
{
    /// <summary>Problems found so far.</summary>
    public List<string> Problems { get; } = new();

    /// <summary>An integer field; a missing one without default is a problem.</summary>
    public int Int(string key, int? fallback = null) => (int)Dbl(key, fallback);

    /// <summary>A number field; a missing one without default is a problem.</summary>
    public double Dbl(string key, double? fallback = null)
    {
        var n = fields[key];
        if (n is not null) return Num(n);
        if (fallback is double d) return d;
        Problems.Add($"'{key}' is missing");
        return 1;
    }

    /// <summary>A JSON number as double, whether it was written as an integer or not.</summary>
    public static double Num(JsonNode n) => double.Parse(n.ToJsonString(), CultureInfo.InvariantCulture);

    /// <summary>Reads <c>config.json</c> from a checkpoint directory as an object (see <see cref="ReadFile"/>).</summary>
    public static JsonObject Read(string dir)
    {
        string path = Path.Combine(dir, "config.json");
        if (!File.Exists(path)) throw new ModelConfigException($"{path}: no config.json");
        return ReadFile(path);
    }

    /// <summary>
    /// Reads a config.json file as an object, as <see cref="Checkpoint"/> reads it: at most
    /// <see cref="ShardIndex.MaxJsonFileBytes"/> bytes, valid UTF-8, valid JSON; every failure a <see cref="ModelConfigException"/>
    /// naming the file.
    /// </summary>
    public static JsonObject ReadFile(string path)
    {
        byte[] bytes;
        try { bytes = ShardIndex.ReadCapped(path, SafeTensorsError.BadConfig); }
        catch (SafeTensorsException e) { throw new ModelConfigException(e.Message); }
        if (!System.Text.Unicode.Utf8.IsValid(bytes)) throw new ModelConfigException($"{path}: not valid UTF-8");
        try
        {
            return JsonNode.Parse(bytes) as JsonObject ?? throw new ModelConfigException($"{path}: not a JSON object");
        }
        catch (JsonException e) { throw new ModelConfigException($"{path}: not valid JSON: {e.Message}"); }
    }
}
