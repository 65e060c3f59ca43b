using System.Diagnostics;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.Json.Serialization;
using Mtp.Adapters;
using Mtp.SafeTensors;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Mtp.Model;

/// <summary>Hyperparameters of a run (all saved with a training checkpoint and restored on resume).</summary>
public sealed record TrainerOptions
{
    /// <summary>Peak learning rate.</summary>
    public double Lr { get; init; } = 1e-3;
    /// <summary>Final learning rate of the cosine, as a fraction of <see cref="Lr"/>.</summary>
    public double MinLrRatio { get; init; } = 0.1;
    /// <summary>Linear warmup steps.</summary>
    public int Warmup { get; init; }
    /// <summary>Schedule horizon (cosine reaches its minimum here); steps past it stay at the minimum (mtp train refuses to run past it).</summary>
    public int TotalSteps { get; init; } = 100;
    /// <summary>Rows per batch.</summary>
    public int Batch { get; init; } = 2;
    /// <summary>Tokens per row.</summary>
    public int SeqLen { get; init; } = 64;
    /// <summary>lambda of total = main + lambda / D * Σ mtp_k.</summary>
    public double MtpLossScale { get; init; } = 0.1;
    /// <summary>AdamW decoupled weight decay (matrices only; norms and 1-D tensors are not decayed).</summary>
    public double WeightDecay { get; init; } = 0.01;
    /// <summary>AdamW beta1.</summary>
    public double Beta1 { get; init; } = 0.9;
    /// <summary>AdamW beta2.</summary>
    public double Beta2 { get; init; } = 0.95;
    /// <summary>AdamW epsilon.</summary>
    public double Eps { get; init; } = 1e-8;
    /// <summary>Global gradient-norm clip.</summary>
    public double ClipNorm { get; init; } = 1.0;
    /// <summary>
    /// What is trained: every parameter (default) or, with <see cref="TrainMode.Mtp"/>, only the MTP depths (the
    /// trainer calls <see cref="MtpModel.FreezeMain"/>). Saved as "all" / "mtp"; a state saved before this option
    /// existed reads as all.
    /// </summary>
    [JsonConverter(typeof(TrainModeJsonConverter))]
    public TrainMode Train { get; init; } = TrainMode.All;

    /// <summary>Learning rate of 0-based step <paramref name="step"/>: linear warmup, then cosine to MinLrRatio·Lr.</summary>
    public double LrAt(long step)
    {
        if (step < Warmup) return Lr * (step + 1) / Warmup;
        double progress = Math.Clamp((double)(step - Warmup) / Math.Max(1, TotalSteps - Warmup), 0, 1);
        double min = Lr * MinLrRatio;
        return min + (Lr - min) * 0.5 * (1 + Math.Cos(Math.PI * progress));
    }
}

/// <summary>What one optimizer step did.</summary>
/// <param name="Step">1-based index of the step just taken.</param>
/// <param name="Loss">Main next-token CE.</param>
/// <param name="TotalLoss">Objective that was back-propagated.</param>
/// <param name="MtpLosses">CE of each MTP depth.</param>
/// <param name="GradNorm">Global gradient norm before clipping.</param>
/// <param name="Lr">Learning rate used.</param>
/// <param name="Tokens">Tokens in the batch.</param>
/// <param name="Seconds">Wall time of the step.</param>
public sealed record StepResult(long Step, double Loss, double TotalLoss, IReadOnlyList<double> MtpLosses, double GradNorm, double Lr, long Tokens, double Seconds)
{
    /// <summary>Tokens per second of this step.</summary>
    public double TokensPerSecond => Tokens / Math.Max(Seconds, 1e-9);
}
