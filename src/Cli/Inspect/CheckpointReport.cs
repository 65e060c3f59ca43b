using System.Text.Json.Nodes;
using Mtp.Adapters.Inspection;

namespace Mtp.Cli.Inspect;

/// <summary>What <c>mtp inspect</c> found in a checkpoint: the library's <see cref="CheckpointFindings"/>, the exit code they
/// imply, and their --json form.</summary>
public sealed class CheckpointReport(CheckpointFindings findings, int problemExitCode)
{
    /// <summary>The findings as the library made them.</summary>
    public CheckpointFindings Findings { get; } = findings;
    /// <summary>Inspected path.</summary>
    public string Path => Findings.Path;
    /// <summary>Family id (one of <see cref="Mtp.Adapters.Families.All"/>) or "unknown".</summary>
    public string Family => Findings.Family;
    /// <summary>config.json model_type (top level or text_config), if any.</summary>
    public string? ModelType => Findings.ModelType;
    /// <summary>Number of safetensors files read.</summary>
    public int ShardCount => Findings.ShardCount;
    /// <summary>Number of tensors.</summary>
    public long TensorCount => Findings.TensorCount;
    /// <summary>Sum of tensor data bytes.</summary>
    public long TotalBytes => Findings.TotalBytes;
    /// <summary>dtype -> number of tensors.</summary>
    public SortedDictionary<string, int> DTypeCounts => Findings.DTypeCounts;
    /// <summary>Quantization schemes found, one line each ("none" when unquantized).</summary>
    public List<string> Quantization => Findings.Quantization;
    /// <summary>Number of FP8 block-quantized weights.</summary>
    public int Fp8Weights => Findings.Fp8Weights;
    /// <summary>Number of FP4 block-quantized weights.</summary>
    public int Fp4Weights => Findings.Fp4Weights;
    /// <summary>Main decoder layers according to config.json.</summary>
    public int? NumHiddenLayers => Findings.NumHiddenLayers;
    /// <summary>MTP depth found in the tensors.</summary>
    public int MtpDepth => Findings.MtpDepth;
    /// <summary>MTP depth declared by config.json, if any.</summary>
    public int? ConfigMtpDepth => Findings.ConfigMtpDepth;
    /// <summary>Tensors belonging to the MTP layers.</summary>
    public int MtpTensorCount => Findings.MtpTensorCount;
    /// <summary>Where the MTP tensors live (name patterns).</summary>
    public List<string> MtpLocations => Findings.MtpLocations;
    /// <summary>per-expert, stacked, mixed or none.</summary>
    public string ExpertLayout => Findings.ExpertLayout;
    /// <summary>Every validation or consistency problem, one line each.</summary>
    public List<string> Problems => Findings.Problems;
    /// <summary>Soft findings that do not make the checkpoint unusable.</summary>
    public List<string> Warnings => Findings.Warnings;
    /// <summary>Exit code the problems imply (0 when none).</summary>
    public int ProblemExitCode { get; } = problemExitCode;
    /// <summary>What the numeric scale check read (null when not run).</summary>
    public ScaleCheckSummary? ScaleCheck => Findings.ScaleCheck;

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
