using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.Json.Serialization;

namespace Mtp.Adapters;

/// <summary>
/// conversion.json as the converter writes it: typed fields in a fixed order, then <see cref="Extra"/> (what the plan adds
/// for its direction: the source record and tied-copy checks to the training layout, the reference to HF, warnings).
/// </summary>
public sealed record ReportDocument
{
    /// <summary>What wrote the file.</summary>
    [JsonPropertyName("tool")] public string Tool { get; init; } = "mtp convert";
    /// <summary>"to-native" or "to-hf".</summary>
    [JsonPropertyName("direction")] public required string Direction { get; init; }
    /// <summary>Family id.</summary>
    [JsonPropertyName("family")] public required string Family { get; init; }
    /// <summary>The options that shape the output.</summary>
    [JsonPropertyName("options")] public required ReportOptions Options { get; init; }
    /// <summary>Where the input is and what it holds.</summary>
    [JsonPropertyName("source")] public required ReportCheckpoint Source { get; init; }
    /// <summary>What was written.</summary>
    [JsonPropertyName("target")] public required ReportTarget Target { get; init; }
    /// <summary>Wall times.</summary>
    [JsonPropertyName("timings")] public required ReportTimings Timings { get; init; }
    /// <summary>Tensor bytes read and written.</summary>
    [JsonPropertyName("bytes")] public required ReportBytes Bytes { get; init; }
    /// <summary>Every output tensor in file order.</summary>
    [JsonPropertyName("tensors")] public required IReadOnlyList<ReportTensor> Tensors { get; init; }
    /// <summary>Source tensors left out on purpose, with the reason.</summary>
    [JsonPropertyName("dropped")] public required IReadOnlyList<ReportDropped> Dropped { get; init; }
    /// <summary>Tensors no rule claims, carried through unchanged.</summary>
    [JsonPropertyName("carried_unknown")] public required IReadOnlyList<string> CarriedUnknown { get; init; }
    /// <summary>To HF with a reference: how the reference's codes were used.</summary>
    [JsonPropertyName("reference_use"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] public ReportReferenceUse? ReferenceUse { get; init; }
    /// <summary>To HF: the weights that changed and needed new scale blocks.</summary>
    [JsonPropertyName("requantized"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] public IReadOnlyList<ReportRequantized>? Requantized { get; init; }
    /// <summary>With <c>--part i/n</c>: the parts the merge put together.</summary>
    [JsonPropertyName("parts"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] public ReportParts? Parts { get; init; }
    /// <summary>
    /// Direction-specific fields, written after the typed ones: <see cref="JsonNode"/> values when built, <see cref="JsonElement"/>
    /// values when read back (an object-valued extension dictionary is what System.Text.Json flattens in both directions).
    /// </summary>
    [JsonExtensionData] public Dictionary<string, object?>? Extra { get; init; }

    static readonly JsonSerializerOptions Indented = new() { WriteIndented = true };
    static readonly JsonSerializerOptions Strict = new() { RespectNullableAnnotations = true, RespectRequiredConstructorParameters = true };

    /// <summary>The file's text: indented JSON and a final newline.</summary>
    public string ToJsonText() => JsonSerializer.Serialize(this, Indented) + "\n";

    /// <summary>Reads a conversion.json that <c>mtp convert</c> wrote (every typed field present and of its kind).</summary>
    /// <exception cref="AdapterException">Malformed (naming the file and what is wrong), or Io when it cannot be read.</exception>
    public static ReportDocument Read(string path)
    {
        try { return JsonSerializer.Deserialize<ReportDocument>(File.ReadAllBytes(path), Strict) ?? throw new JsonException("null document"); }
        catch (JsonException e) { throw new AdapterException(AdapterErrorKind.Malformed, $"{path}: not a conversion report: {e.Message.Replace('\n', ' ')}", e) { File = path }; }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { throw new AdapterException(AdapterErrorKind.Io, $"{path}: {e.Message}", e) { File = path }; }
    }
}

/// <summary>The report's <c>options</c>.</summary>
public sealed record ReportOptions(
    [property: JsonPropertyName("dtype")] string? DType,
    [property: JsonPropertyName("expert_layout")] string ExpertLayout,
    [property: JsonPropertyName("allow_unknown")] bool AllowUnknown,
    [property: JsonPropertyName("max_shard_bytes")] long MaxShardBytes,
    [property: JsonPropertyName("reference")] string? Reference);

/// <summary>A checkpoint summary: where it is, its tensor count, bytes, files and tensors per dtype.</summary>
public sealed record ReportCheckpoint(
    [property: JsonPropertyName("path")] string Path,
    [property: JsonPropertyName("tensors")] int Tensors,
    [property: JsonPropertyName("bytes")] long Bytes,
    [property: JsonPropertyName("files")] int Files,
    [property: JsonPropertyName("dtype_counts")] IReadOnlyDictionary<string, int> DTypeCounts);

/// <summary>The report's <c>target</c>: where the output is, its tensors, bytes, shards and tensors per dtype.</summary>
public sealed record ReportTarget(
    [property: JsonPropertyName("path")] string Path,
    [property: JsonPropertyName("tensors")] int Tensors,
    [property: JsonPropertyName("bytes")] long Bytes,
    [property: JsonPropertyName("shards")] IReadOnlyList<string> Shards,
    [property: JsonPropertyName("dtype_counts")] IReadOnlyDictionary<string, int> DTypeCounts);

/// <summary>The report's <c>timings</c> (seconds; <see cref="PartSeconds"/> only for a merged <c>--part</c> conversion).</summary>
public sealed record ReportTimings(
    [property: JsonPropertyName("plan_seconds")] double PlanSeconds,
    [property: JsonPropertyName("total_seconds")] double TotalSeconds,
    [property: JsonPropertyName("part_seconds"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] IReadOnlyList<double>? PartSeconds = null);

/// <summary>The report's <c>bytes</c>.</summary>
public sealed record ReportBytes([property: JsonPropertyName("read")] long Read, [property: JsonPropertyName("written")] long Written);

/// <summary>One output tensor: name, dtype, shape, file, the source tensors it is made from and the operations applied.</summary>
public sealed record ReportTensor(
    [property: JsonPropertyName("name")] string Name,
    [property: JsonPropertyName("dtype")] string DType,
    [property: JsonPropertyName("shape")] IReadOnlyList<long> Shape,
    [property: JsonPropertyName("file")] string File,
    [property: JsonPropertyName("sources")] IReadOnlyList<string> Sources,
    [property: JsonPropertyName("ops")] IReadOnlyList<string> Ops);

/// <summary>A source tensor left out, with the reason.</summary>
public sealed record ReportDropped([property: JsonPropertyName("name")] string Name, [property: JsonPropertyName("reason")] string Reason);

/// <summary>A weight re-quantized on export, with the number of blocks that needed a new scale.</summary>
public sealed record ReportRequantized([property: JsonPropertyName("name")] string Name, [property: JsonPropertyName("new_scale_blocks")] int NewScaleBlocks);

/// <summary>How export used the reference: weights re-encoded exactly from its scales, weights compared with its codes.</summary>
public sealed record ReportReferenceUse(
    [property: JsonPropertyName("reencoded_exactly_from_scales")] int ReencodedExactly,
    [property: JsonPropertyName("compared_with_reference_codes")] int ComparedWithCodes);

/// <summary>A merged <c>--part i/n</c> conversion: the part count, the plan hash and the host of each part.</summary>
public sealed record ReportParts(
    [property: JsonPropertyName("count")] int Count,
    [property: JsonPropertyName("plan_hash")] string PlanHash,
    [property: JsonPropertyName("hosts")] IReadOnlyList<string?> Hosts);
