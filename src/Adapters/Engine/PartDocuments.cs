using System.Text.Json.Nodes;
using System.Text.Json.Serialization;

namespace Mtp.Adapters;

/// <summary>A tensor of a planned shard, as the part plan records it.</summary>
internal sealed record PartShardTensor(
    [property: JsonPropertyName("name")] string Name,
    [property: JsonPropertyName("dtype")] string DType,
    [property: JsonPropertyName("shape")] long[] Shape);

/// <summary>A planned shard file: its name, exact size and tensors.</summary>
internal sealed record PartShard(
    [property: JsonPropertyName("file")] string File,
    [property: JsonPropertyName("size")] long Size,
    [property: JsonPropertyName("tensors")] IReadOnlyList<PartShardTensor> Tensors);

/// <summary>A source file of the plan: name and size (what the plan hash covers of the input).</summary>
internal sealed record PartSourceFile([property: JsonPropertyName("file")] string File, [property: JsonPropertyName("size")] long Size);

/// <summary>The options that decide a part's bytes (covered by the plan hash).</summary>
internal sealed record PartHashOptions(
    [property: JsonPropertyName("dtype")] string? DType,
    [property: JsonPropertyName("per_expert")] bool PerExpert,
    [property: JsonPropertyName("allow_unknown")] bool AllowUnknown,
    [property: JsonPropertyName("max_shard_bytes")] long MaxShardBytes);

/// <summary>
/// What the plan hash is computed over: every part of one conversion must agree on it. Its properties are serialized in
/// this order; changing them changes every hash.
/// </summary>
internal sealed record PartHashInput
{
    [JsonPropertyName("format")] public required string Format { get; init; }
    [JsonPropertyName("direction")] public required string Direction { get; init; }
    [JsonPropertyName("family")] public required string Family { get; init; }
    [JsonPropertyName("options")] public required PartHashOptions Options { get; init; }
    // How scales are encoded decides their bytes (power-of-two F32 under ue8m0), on both sides of the conversion.
    [JsonPropertyName("scale_fmt")] public string? ScaleFmt { get; init; }
    [JsonPropertyName("source_files")] public required IReadOnlyList<PartSourceFile> SourceFiles { get; init; }
    [JsonPropertyName("shards")] public required IReadOnlyList<PartShard> Shards { get; init; }
    [JsonPropertyName("index_metadata")] public JsonObject? IndexMetadata { get; init; }
    [JsonPropertyName("write_index")] public required bool WriteIndex { get; init; }
    [JsonPropertyName("config")] public required JsonObject Config { get; init; }
}

/// <summary><c>.mtp-parts/plan-HASH.json</c>: the whole plan, which the merge completes the checkpoint from.</summary>
internal sealed record PartPlanDocument
{
    [JsonPropertyName("format")] public required string Format { get; init; }
    [JsonPropertyName("plan_hash")] public required string PlanHash { get; init; }
    [JsonPropertyName("direction")] public required string Direction { get; init; }
    [JsonPropertyName("family")] public required string Family { get; init; }
    [JsonPropertyName("total_bytes")] public required long TotalBytes { get; init; }
    [JsonPropertyName("tensors")] public required int Tensors { get; init; }
    [JsonPropertyName("shards")] public required IReadOnlyList<PartShard> Shards { get; init; }
    [JsonPropertyName("write_index")] public required bool WriteIndex { get; init; }
    [JsonPropertyName("index_metadata")] public JsonObject? IndexMetadata { get; init; }
    [JsonPropertyName("config")] public required JsonObject Config { get; init; }
    /// <summary>conversion.json without the parts' timings and re-quantization results.</summary>
    [JsonPropertyName("report")] public required ReportDocument Report { get; init; }
    /// <summary>Whether the parts re-quantize (to HF): the merged report then lists what they re-quantized.</summary>
    [JsonPropertyName("requantize")] public required bool Requantize { get; init; }
    [JsonPropertyName("aux_sources")] public required IReadOnlyList<string> AuxSources { get; init; }
}

/// <summary><c>.mtp-parts/part-i-of-n.json</c>: what one part wrote (its presence marks the part done).</summary>
internal sealed record PartManifest
{
    [JsonPropertyName("format")] public required string Format { get; init; }
    [JsonPropertyName("plan_hash")] public required string PlanHash { get; init; }
    [JsonPropertyName("part")] public required int Part { get; init; }
    [JsonPropertyName("parts")] public required int Parts { get; init; }
    [JsonPropertyName("shards")] public required IReadOnlyList<string> Shards { get; init; }
    /// <summary>The tied-copy comparisons made (a later part takes them from here, see <see cref="TiedCopies"/>).</summary>
    [JsonPropertyName(TiedCopies.ManifestKey)] public JsonArray? TiedChecks { get; init; }
    [JsonPropertyName("bytes_written")] public required long BytesWritten { get; init; }
    [JsonPropertyName("seconds")] public required double Seconds { get; init; }
    [JsonPropertyName("host")] public string? Host { get; init; }
    [JsonPropertyName("requantized")] public required IReadOnlyList<ReportRequantized> Requantized { get; init; }
}
