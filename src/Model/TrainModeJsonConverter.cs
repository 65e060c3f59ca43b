using System.Text.Json;
using System.Text.Json.Serialization;

namespace Mtp.Model;

/// <summary>
/// <see cref="TrainMode"/> in JSON as the words the command line takes ("all", "mtp"); anything else is refused
/// with a <see cref="JsonException"/> naming the value.
/// </summary>
public sealed class TrainModeJsonConverter : JsonConverter<TrainMode>
{
    /// <summary>The word of <paramref name="mode"/>: "all" or "mtp".</summary>
    public static string Name(TrainMode mode) => mode == TrainMode.Mtp ? "mtp" : "all";

    /// <summary>The mode named <paramref name="name"/> (case-insensitive), or null when it names none.</summary>
    public static TrainMode? Parse(string name) =>
        name.Equals("mtp", StringComparison.OrdinalIgnoreCase) ? TrainMode.Mtp
        : name.Equals("all", StringComparison.OrdinalIgnoreCase) ? TrainMode.All
        : null;

    /// <inheritdoc />
    public override TrainMode Read(ref Utf8JsonReader reader, Type typeToConvert, JsonSerializerOptions options)
    {
        string? s = reader.TokenType == JsonTokenType.String ? reader.GetString() : null;
        return (s is null ? null : Parse(s)) ?? throw new JsonException($"train mode must be \"all\" or \"mtp\", not {(s is null ? reader.TokenType.ToString() : $"\"{s}\"")}");
    }

    /// <inheritdoc />
    public override void Write(Utf8JsonWriter writer, TrainMode value, JsonSerializerOptions options) => writer.WriteStringValue(Name(value));
}
