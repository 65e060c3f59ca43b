using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Mtp.Model;

// Field names in these modules ARE the parameter names (TorchSharp registers fields by name), so they
// follow the checkpoint's snake_case and are exempt from C# naming conventions.
#pragma warning disable IDE1006

/// <summary>
/// DeepSeek-V3 router. <c>e_score_correction_bias</c> is a buffer: it is not trained by gradients
/// (DeepSeek adjusts it with a load-balancing rule outside backprop); here it stays fixed and is
/// saved back unchanged, in F32.
/// </summary>
public sealed class MoeGate : nn.Module<Tensor, (Tensor Indices, Tensor Weights)>
{
    readonly Parameter weight;
    readonly DeepSeekV3Config _c;

    /// <summary>Creates the router.</summary>
    public MoeGate(DeepSeekV3Config c, ScalarType dtype, Device device) : base("MoeGate")
    {
        _c = c;
        weight = P.Make(new long[] { c.NRoutedExperts, c.HiddenSize }, dtype, device);
        register_buffer("e_score_correction_bias", torch.zeros(c.NRoutedExperts, dtype: ScalarType.Float32, device: device));
        RegisterComponents();
    }

    /// <summary>The selection bias buffer [E], F32.</summary>
    public Tensor Bias => get_buffer("e_score_correction_bias")!;

    /// <summary>Routes tokens x [N, H]: returns chosen expert indices [N, k] and their weights [N, k] (F32).</summary>
    public override (Tensor Indices, Tensor Weights) forward(Tensor x)
    {
        var logits = nn.functional.linear(x.to(ScalarType.Float32), weight.to(ScalarType.Float32));
        return Route(logits.sigmoid(), Bias, _c);
    }

    /// <summary>
    /// noaux_tc routing on sigmoid scores [N, E]: the bias is added for selection only; groups are
    /// ranked by the sum of their top-2 biased scores and only topk_group groups are kept; then the
    /// top num_experts_per_tok experts; weights are the UNBIASED scores, normalised when
    /// norm_topk_prob, times routed_scaling_factor.
    /// </summary>
    public static (Tensor Indices, Tensor Weights) Route(Tensor scores, Tensor bias, DeepSeekV3Config c)
    {
        long n = scores.shape[0];
        int e = c.NRoutedExperts, g = c.NGroup;
        var choice = scores.Plus(bias.to(scores.dtype).unsqueeze(0));
        if (g > 1)
        {
            var grouped = choice.view(n, g, e / g);
            var groupScores = grouped.topk(2, dim: -1).values.sum(-1);                 // [N,g]
            var keep = groupScores.topk(c.TopkGroup, dim: -1).indexes;                 // [N,topk_group]
            var groupMask = zeros(n, g, dtype: ScalarType.Bool, device: scores.device).scatter(1, keep, ones_like(keep, dtype: ScalarType.Bool));
            var expertMask = groupMask.unsqueeze(-1).expand(n, g, e / g).reshape(n, e);
            choice = choice.FillWhere(expertMask.logical_not(), double.NegativeInfinity);
        }
        var idx = choice.topk(c.NumExpertsPerTok, dim: -1).indexes;
        var w = scores.gather(1, idx);
        if (c.NormTopkProb) w = w / w.sum(-1, keepdim: true).Plus(1e-20);
        return (idx, w.Times(c.RoutedScalingFactor));
    }
}

/// <summary>DeepSeek-V3 MoE block: <c>gate</c>, <c>experts</c>, <c>shared_experts</c>.</summary>
public sealed class MoeBlock : nn.Module<Tensor, Tensor>
{
    readonly MoeGate gate;
    readonly Experts experts;
    readonly SwiGluMlp? shared_experts;

    /// <summary>Creates the block.</summary>
    public MoeBlock(DeepSeekV3Config c, ScalarType dtype, Device device) : base("MoeBlock")
    {
        gate = new MoeGate(c, dtype, device);
        experts = new Experts(c, dtype, device);
        if (c.NSharedExperts > 0) shared_experts = new SwiGluMlp(c.HiddenSize, (long)c.MoeIntermediateSize * c.NSharedExperts, dtype, device);
        RegisterComponents();
    }

    /// <summary>The router.</summary>
    public MoeGate Gate => gate;

    /// <inheritdoc />
    public override Tensor forward(Tensor x)
    {
        var shape = x.shape;
        var flat = x.reshape(-1, shape[^1]);
        var (idx, w) = gate.forward(flat);
        var y = experts.forward(flat, idx, w);
        if (shared_experts is not null) y = y.Plus(shared_experts.forward(flat));
        return y.view(shape);
    }
}
