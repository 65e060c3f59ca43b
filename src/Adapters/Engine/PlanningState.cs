using System.Text.Json.Nodes;
using Mtp.Quant;
using Mtp.SafeTensors;

namespace Mtp.Adapters;

/// <summary>What planning one conversion has seen so far: the source tensors claimed by a rule, those missing, those no rule claims.</summary>
internal sealed class PlanningState
{
    /// <summary>Source tensors some rule has taken.</summary>
    public HashSet<string> Claimed { get; } = new(StringComparer.Ordinal);
    /// <summary>Expected source tensors that are absent.</summary>
    public List<string> Missing { get; } = new();
    /// <summary>Source tensors no rule claims (carried with --allow-unknown, else an error).</summary>
    public List<string> Unknown { get; } = new();
}

/// <summary>What the HF planner reads: the training checkpoint, the reference, the table and the target format's hints.</summary>
/// <param name="Nat">The training-layout input.</param>
/// <param name="Reference">The HF reference, if any.</param>
/// <param name="Table">The family's rule table.</param>
/// <param name="Hints">The HF dtype and shape of every tensor (reference, else the recorded source).</param>
/// <param name="ForceType">An explicit unquantized dtype (--dtype), else null.</param>
/// <param name="Block">The FP8 block size.</param>
internal sealed record HfPlanInputs(Checkpoint Nat, Checkpoint? Reference, RuleTable Table,
    Dictionary<string, (DType DType, long[] Shape)> Hints, DType? ForceType, BlockSize Block);

/// <summary>Who says which family: --family, the family used, the config and where it is (for a one-line contradiction).</summary>
/// <param name="Given">--family as given, or null.</param>
/// <param name="Family">The family planned with.</param>
/// <param name="Config">The config.json read.</param>
/// <param name="ConfigDir">Its checkpoint (folder or file).</param>
internal sealed record FamilyClaim(string? Given, string Family, JsonObject Config, string ConfigDir);
