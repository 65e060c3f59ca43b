using Mtp.SafeTensors;

namespace Mtp.Adapters.Inspection;

/// <summary>What <see cref="CheckpointInspector.Inspect"/> found in a checkpoint, from headers, config.json and scales.</summary>
public sealed class CheckpointFindings
{
    /// <summary>Inspected path.</summary>
    public required string Path { get; init; }
    /// <summary>Family id (one of <see cref="Families.All"/>) or "unknown".</summary>
    public required string Family { get; init; }
    /// <summary>config.json model_type (top level or text_config), if any.</summary>
    public string? ModelType { get; init; }
    /// <summary>Number of safetensors files read.</summary>
    public int ShardCount { get; init; }
    /// <summary>Number of tensors.</summary>
    public long TensorCount { get; init; }
    /// <summary>Sum of tensor data bytes.</summary>
    public long TotalBytes { get; init; }
    /// <summary>dtype -> number of tensors.</summary>
    public required SortedDictionary<string, int> DTypeCounts { get; init; }
    /// <summary>Quantization schemes found, one line each ("none" when unquantized).</summary>
    public required List<string> Quantization { get; init; }
    /// <summary>Number of FP8 block-quantized weights.</summary>
    public int Fp8Weights { get; init; }
    /// <summary>Number of FP4 block-quantized weights.</summary>
    public int Fp4Weights { get; init; }
    /// <summary>Main decoder layers according to config.json.</summary>
    public int? NumHiddenLayers { get; init; }
    /// <summary>MTP depth found in the tensors.</summary>
    public int MtpDepth { get; init; }
    /// <summary>MTP depth declared by config.json, if any.</summary>
    public int? ConfigMtpDepth { get; init; }
    /// <summary>Tensors belonging to the MTP layers.</summary>
    public int MtpTensorCount { get; init; }
    /// <summary>Where the MTP tensors live (name patterns).</summary>
    public required List<string> MtpLocations { get; init; }
    /// <summary>per-expert, stacked, mixed or none.</summary>
    public required string ExpertLayout { get; init; }
    /// <summary>Every validation or consistency problem, one line each.</summary>
    public required List<string> Problems { get; init; }
    /// <summary>Soft findings that do not make the checkpoint unusable.</summary>
    public required List<string> Warnings { get; init; }
    /// <summary>What the numeric scale check read.</summary>
    public ScaleCheckSummary? ScaleCheck { get; init; }

    /// <summary>The reader's errors, one per reader problem (their kinds decide the category of the whole).</summary>
    public required IReadOnlyList<SafeTensorsError> ReaderErrors { get; init; }
    /// <summary>Problems of files that disagree with each other or with config.json (depths, layers, experts, conventions).</summary>
    public int InconsistentProblems { get; init; }
    /// <summary>Quantization problems (missing scales, grids, two scale conventions, non-finite scales).</summary>
    public int QuantProblems { get; init; }
    /// <summary>Those of <see cref="QuantProblems"/> that make a weight unreadable (bad grids, non-finite scales).</summary>
    public int QuantMalformed { get; init; }
}

/// <summary>What inspect's check of the scales for NaN / infinity read.</summary>
/// <param name="TensorsRead">Scale tensors read whole.</param>
/// <param name="TensorsSampled">FP4 group scales of which one window was read (none with --full-scales).</param>
/// <param name="BytesRead">Scale bytes read.</param>
/// <param name="Full">Whether --full-scales was given.</param>
public sealed record ScaleCheckSummary(int TensorsRead, int TensorsSampled, long BytesRead, bool Full);
