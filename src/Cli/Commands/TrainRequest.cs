using Mtp.Model;
using Mtp.SafeTensors;

namespace Mtp.Cli.Commands;

/// <summary>What one <c>mtp train</c> invocation asks for, as parsed from its command line.</summary>
public sealed record TrainRequest
{
    /// <summary>The checkpoint to train (training layout or HF).</summary>
    public required string Checkpoint { get; init; }
    /// <summary>Optimizer steps to run now.</summary>
    public required int Steps { get; init; }
    /// <summary>--out, or null to save nothing.</summary>
    public string? OutDir { get; init; }
    /// <summary>--device as typed.</summary>
    public required string Device { get; init; }
    /// <summary>--dtype as typed.</summary>
    public required string DType { get; init; }
    /// <summary>Optimizer, schedule and batch options.</summary>
    public required TrainerOptions Options { get; init; }
    /// <summary>--data, or null for the synthetic stream.</summary>
    public string? DataPath { get; init; }
    /// <summary>--seed.</summary>
    public long Seed { get; init; }
    /// <summary>--resume, or null.</summary>
    public string? ResumeDir { get; init; }
    /// <summary>--threads.</summary>
    public int Threads { get; init; }
    /// <summary>--json.</summary>
    public bool Json { get; init; }
    /// <summary>The flags that were typed (checked against a resumed state).</summary>
    public required TrainFlags Given { get; init; }
    /// <summary>How --out may be replaced.</summary>
    public required OutputRules OutRules { get; init; }
    /// <summary>--save-as hf.</summary>
    public bool SaveAsHf { get; init; }
}
