using System.Diagnostics;
using System.Text.Json.Nodes;
using Mtp.SafeTensors;

namespace Mtp.Adapters;

/// <summary>
/// Everything a conversion decided before writing a byte: direction, every output tensor with its pieces, the shards,
/// their metadata, config.json, what was dropped or carried, the auxiliary-file sources and the report's extra fields.
/// Executing the whole plan, one <c>--part</c> of it, and the part manifests all read this one object.
/// </summary>
internal sealed class ConversionPlan
{
    Dictionary<string, PlannedTensor>? _byName;

    /// <summary>Which way the conversion goes.</summary>
    public required ConversionDirection Direction { get; init; }
    /// <summary>The family id.</summary>
    public required string Family { get; init; }
    /// <summary>The input checkpoint's path, as given.</summary>
    public required string InDir { get; init; }
    /// <summary>The output directory, as given.</summary>
    public required string OutDir { get; init; }
    /// <summary>The conversion's options.</summary>
    public required ConvertOptions Options { get; init; }
    /// <summary>The open input checkpoint the pieces read from.</summary>
    public required Checkpoint Source { get; init; }
    /// <summary>Every output tensor with the pieces that make its bytes.</summary>
    public required List<PlannedTensor> Outputs { get; init; }
    /// <summary>The output shards, in order, with their tensors.</summary>
    public required IReadOnlyList<ShardPlan> Shards { get; init; }
    /// <summary>Per shard file, its safetensors metadata (the reference's); null: <c>{"format": "pt"}</c> for each.</summary>
    public Dictionary<string, IReadOnlyDictionary<string, string>>? Metadata { get; init; }
    /// <summary>The output's config.json.</summary>
    public required JsonObject Config { get; init; }
    /// <summary>Source tensors left out on purpose, with the reason.</summary>
    public List<(string, string)> Dropped { get; init; } = new();
    /// <summary>Unknown tensors carried through (<see cref="ConvertOptions.AllowUnknown"/>).</summary>
    public List<string> Carried { get; init; } = new();
    /// <summary>Report fields specific to the direction (source record, tied checks, warnings, reference), added last.</summary>
    public required JsonObject Extra { get; init; }
    /// <summary>The reference's shard index (its metadata is carried into ours), when converting against a reference.</summary>
    public string? ReferenceIndexPath { get; init; }
    /// <summary>To HF: the re-quantizing pieces (for the report's requantized list); null to native.</summary>
    public List<QuantPiece>? QuantPieces { get; init; }
    /// <summary>The folders whose auxiliary files (tokenizer, README, ...) the output carries: the input, then the reference.</summary>
    public IReadOnlyList<string> AuxiliarySources => new[] { Source.Directory, Options.Reference }.Where(x => x != null).Select(x => x!).ToList();
    /// <summary>Started when the conversion started; stopped when its report is written.</summary>
    public required Stopwatch Clock { get; init; }
    /// <summary>Time spent planning.</summary>
    public TimeSpan PlanTime { get; init; }

    /// <summary>The output tensors by name.</summary>
    public Dictionary<string, PlannedTensor> ByName => _byName ??= Outputs.ToDictionary(o => o.Name, StringComparer.Ordinal);
    /// <summary>Tensor bytes of all shards.</summary>
    public long TotalBytes => Shards.Sum(s => s.Bytes);
    /// <summary>The output's absolute path without a trailing slash.</summary>
    public string FullOutDir => Path.GetFullPath(OutDir).TrimEnd('/');
    /// <summary>Whether the reference has a shard index (then ours is written too, with its metadata).</summary>
    bool HasReferenceIndex => ReferenceIndexPath != null && File.Exists(ReferenceIndexPath);
    /// <summary>Whether the output gets a shard index: several shards, or the reference has one.</summary>
    public bool WritesIndex => Shards.Count > 1 || HasReferenceIndex;
    /// <summary>The reference index's metadata (beyond total_size), if any.</summary>
    public JsonObject? IndexMetadata() => HasReferenceIndex ? ShardIndex.Read(ReferenceIndexPath!).Metadata : null;

    /// <summary>The safetensors metadata of shard <paramref name="file"/>.</summary>
    public IReadOnlyDictionary<string, string> ShardMetadata(string file) =>
        Metadata != null && Metadata.TryGetValue(file, out var m) ? m : new Dictionary<string, string> { ["format"] = "pt" };

    /// <summary>The exact size of shard <paramref name="s"/>'s file: length prefix, header and data.</summary>
    public long ShardFileSize(ShardPlan s) => 8L + SafeTensorsWriter.BuildHeader(s.Tensors, ShardMetadata(s.FileName)).Length + s.Bytes;

    /// <summary>Worker threads for the pipeline (<see cref="ConvertOptions.Threads"/>; 0: every core).</summary>
    public int Threads => Options.Threads > 0 ? Options.Threads : Environment.ProcessorCount;

    /// <summary>Weights that changed and were re-quantized (among <paramref name="only"/>'s names, when given).</summary>
    public List<(string, int)> Requantized(Func<string, bool>? only = null) =>
        QuantPieces?.Where(q => (only == null || only(q.WeightName)) && !q.Unchanged && q.ChangedBlocks > 0).Select(q => (q.WeightName, q.ChangedBlocks)).ToList() ?? new();
}
