using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Mtp.Model;

// Field names in these modules ARE the parameter names (TorchSharp registers fields by name).
#pragma warning disable IDE1006

/// <summary>SwiGLU with clamping (V4): gate ≤ limit, −limit ≤ up ≤ limit (no clamp when limit ≤ 0).</summary>
internal static class V4Swiglu
{
    /// <summary>silu(clamp(gate, max: limit)) · clamp(up, −limit, limit), computed in F32, returned in gate's dtype.</summary>
    public static Tensor Act(Tensor gate, Tensor up, double limit)
    {
        var g = gate.to(ScalarType.Float32);
        var u = up.to(ScalarType.Float32);
        if (limit > 0)
        {
            g = g.AtMost(limit);
            u = u.Clamped(-limit, limit);
        }
        return (nn.functional.silu(g) * u).to(gate.dtype);
    }
}

/// <summary>The shared expert: <c>gate_proj</c>, <c>up_proj</c>, <c>down_proj</c> with the swiglu clamp.</summary>
internal sealed class V4SharedExpert : nn.Module<Tensor, Tensor>
{
    readonly Linear gate_proj;
    readonly Linear up_proj;
    readonly Linear down_proj;
    readonly double _limit;

    /// <summary>Creates the expert.</summary>
    public V4SharedExpert(long hidden, long inter, double limit, ScalarType dtype, Device device) : base("V4SharedExpert")
    {
        gate_proj = new Linear(hidden, inter, dtype, device);
        up_proj = new Linear(hidden, inter, dtype, device);
        down_proj = new Linear(inter, hidden, dtype, device);
        _limit = limit;
        RegisterComponents();
    }

    /// <inheritdoc />
    public override Tensor forward(Tensor x) => down_proj.forward(V4Swiglu.Act(gate_proj.forward(x), up_proj.forward(x), _limit));
}

/// <summary>
/// V4 router <c>gate</c>: <c>weight</c> [E, H]; score = sqrt(softplus(x·Wᵀ)) (or sigmoid/softmax). Non-hash layers
/// choose the top-k of score + <c>e_score_correction_bias</c> (F32 buffer, selection only); hash layers take <c>tid2eid</c>[token]
/// (I32 buffer). Weights: the unbiased scores of the chosen experts, divided by their sum unless scoring is softmax,
/// times routed_scaling_factor. Logits are computed in F32 from F32 copies of x and the weight whatever the model
/// dtype. Both as DeepSeek's V4 inference/model.py <c>Gate.forward</c>, which has no norm_topk_prob (src/Model/README.md).
/// </summary>
internal sealed class V4Gate : nn.Module
{
    readonly Parameter weight;
    readonly DeepSeekV4Config _c;
    readonly bool _hash;

    /// <summary>Creates the router of a hash or a scored layer.</summary>
    public V4Gate(DeepSeekV4Config c, bool hash, ScalarType dtype, Device device) : base("V4Gate")
    {
        _c = c; _hash = hash;
        weight = P.Make(new long[] { c.NRoutedExperts, c.HiddenSize }, dtype, device);
        if (hash) register_buffer("tid2eid", zeros(new long[] { c.VocabSize, c.NumExpertsPerTok }, dtype: ScalarType.Int32, device: device));
        else register_buffer("e_score_correction_bias", zeros(c.NRoutedExperts, dtype: ScalarType.Float32, device: device));
        RegisterComponents();
    }

    /// <summary>Whether this layer routes by token id.</summary>
    public bool IsHash => _hash;

    /// <summary>Routes x [N, H] with token ids [N]: (indices [N, k] int64, weights [N, k] F32).</summary>
    public (Tensor Indices, Tensor Weights) Route(Tensor x, Tensor ids)
    {
        var logits = nn.functional.linear(x.to(ScalarType.Float32), weight.to(ScalarType.Float32));
        var scores = _c.ScoringFunc switch
        {
            "softmax" => logits.softmax(-1),
            "sigmoid" => logits.sigmoid(),
            _ => logits.Softplus().sqrt(),
        };
        Tensor idx;
        if (_hash) idx = get_buffer("tid2eid")!.index_select(0, ids.flatten()).to(ScalarType.Int64);
        else
            using (no_grad())
                idx = scores.Plus(get_buffer("e_score_correction_bias")!.unsqueeze(0)).topk(_c.NumExpertsPerTok, dim: -1).indexes;
        var w = scores.gather(1, idx);
        if (_c.ScoringFunc != "softmax") w = w / w.sum(-1, keepdim: true);
        return (idx, w.Times(_c.RoutedScalingFactor));
    }
}

/// <summary>V4 MoE <c>mlp</c>: <c>gate</c>, <c>experts</c>, <c>shared_experts</c>.</summary>
internal sealed class V4Moe : nn.Module
{
    readonly V4Gate gate;
    readonly Experts experts;
    readonly V4SharedExpert? shared_experts;

    /// <summary>Creates the block.</summary>
    public V4Moe(DeepSeekV4Config c, bool hash, ScalarType dtype, Device device) : base("V4Moe")
    {
        gate = new V4Gate(c, hash, dtype, device);
        experts = new Experts(c.NRoutedExperts, c.MoeIntermediateSize, c.HiddenSize, dtype, device, (g, u) => V4Swiglu.Act(g, u, c.SwigluLimit));
        if (c.NSharedExperts > 0) shared_experts = new V4SharedExpert(c.HiddenSize, (long)c.MoeIntermediateSize * c.NSharedExperts, c.SwigluLimit, dtype, device);
        RegisterComponents();
    }

    /// <summary>The router.</summary>
    public V4Gate Gate => gate;

    /// <summary>x [B, S, H] (after post_attention_layernorm), token ids [B, S] → [B, S, H].</summary>
    public Tensor Forward(Tensor x, Tensor ids)
    {
        var shape = x.shape;
        var flat = x.reshape(-1, shape[^1]);
        var (idx, w) = gate.Route(flat, ids.flatten());
        var y = experts.forward(flat, idx, w);
        if (shared_experts is not null) y = y.Plus(shared_experts.forward(flat));
        return y.view(shape);
    }
}
