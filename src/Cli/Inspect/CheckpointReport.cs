using System.Text.Json.Nodes;

namespace Mtp.Cli.Inspect;

/// <summary>What <c>mtp inspect</c> found in a checkpoint.</summary>
public sealed class CheckpointReport
{
    /// <summary>Inspected path.</summary>
    public required string Path { get; init; }
    /// <summary>Family id (deepseek-v3, deepseek-v4, qwen3.5, qwen3-next) or "unknown".</summary>
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
    /// <summary>per-expert, fused, mixed or none.</summary>
    public required string ExpertLayout { get; init; }
    /// <summary>Every validation or consistency problem, one line each.</summary>
    public required List<string> Problems { get; init; }
    /// <summary>Soft findings that do not make the checkpoint unusable.</summary>
    public required List<string> Warnings { get; init; }
    /// <summary>Exit code the problems imply (0 when none).</summary>
    public int ProblemExitCode { get; init; }

    /// <summary>What the numeric scale check read (null when not run).</summary>
    public ScaleCheckSummary? ScaleCheck { get; init; }

    /// <summary>The --json form (keys are part of the CLI's contract).</summary>
    public JsonObject ToJson()
    {
        var dtypes = new JsonObject();
        foreach (var (k, v) in DTypeCounts) dtypes[k] = v;
        return new JsonObject
        {
            ["path"] = Path,
            ["family"] = Family,
            ["model_type"] = ModelType,
            ["shard_count"] = ShardCount,
            ["tensor_count"] = TensorCount,
            ["total_bytes"] = TotalBytes,
            ["dtype_counts"] = dtypes,
            ["quantization"] = new JsonArray(Quantization.Select(q => (JsonNode?)q).ToArray()),
            ["fp8_weight_count"] = Fp8Weights,
            ["fp4_weight_count"] = Fp4Weights,
            ["num_hidden_layers"] = NumHiddenLayers,
            ["mtp_depth"] = MtpDepth,
            ["config_mtp_depth"] = ConfigMtpDepth,
            ["mtp_tensor_count"] = MtpTensorCount,
            ["mtp_locations"] = new JsonArray(MtpLocations.Select(q => (JsonNode?)q).ToArray()),
            ["expert_layout"] = ExpertLayout,
            ["problems"] = new JsonArray(Problems.Select(q => (JsonNode?)q).ToArray()),
            ["warnings"] = new JsonArray(Warnings.Select(q => (JsonNode?)q).ToArray()),
            ["scale_check"] = ScaleCheck is { } sc ? new JsonObject
            {
                ["tensors_read"] = sc.TensorsRead, ["tensors_sampled"] = sc.TensorsSampled, ["bytes_read"] = sc.BytesRead, ["full"] = sc.Full,
            } : null,
        };
    }
}

/// <summary>What inspect's check of the scales for NaN / infinity read.</summary>
/// <param name="TensorsRead">Scale tensors read whole.</param>
/// <param name="TensorsSampled">FP4 group scales of which one window was read (none with --full-scales).</param>
/// <param name="BytesRead">Scale bytes read.</param>
/// <param name="Full">Whether --full-scales was given.</param>
public sealed record ScaleCheckSummary(int TensorsRead, int TensorsSampled, long BytesRead, bool Full);
