using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Mtp.Model;

// Field names in these modules ARE the parameter names (TorchSharp registers fields by name), so they
// follow the checkpoint's snake_case and are exempt from C# naming conventions.
#pragma warning disable IDE1006

/// <summary>Per-forward attention inputs shared by all layers: allowed-attention mask and rope tables.</summary>
/// <param name="Mask">[B, 1, S, S] bool, true where query i may attend key j (causal and same packed sequence).</param>
/// <param name="Cos">[B, 1, S, rope/2] F32.</param>
/// <param name="Sin">[B, 1, S, rope/2] F32.</param>
public sealed record AttentionContext(Tensor Mask, Tensor Cos, Tensor Sin);

/// <summary>Creates parameters directly in the target dtype and device (no float32 detour).</summary>
internal static class P
{
    [ThreadStatic] static bool t_unfilled;

    /// <summary>
    /// While the returned scope lives (on this thread), parameters are allocated without being filled: a strict load
    /// overwrites every one of them (or fails and disposes the model), and filling 4 GB of BF16 with zeros first took
    /// more time than loading it.
    /// </summary>
    public static IDisposable ForLoading()
    {
        bool outer = t_unfilled;
        t_unfilled = true;
        return new Restore(outer);
    }

    sealed class Restore(bool outer) : IDisposable
    {
        public void Dispose() => t_unfilled = outer;
    }

    public static Parameter Make(long[] shape, ScalarType dtype, Device device, bool ones = false) =>
        new(t_unfilled ? torch.empty(shape, dtype: dtype, device: device)
            : ones ? torch.ones(shape, dtype: dtype, device: device) : torch.zeros(shape, dtype: dtype, device: device), requires_grad: true);
}

/// <summary>Bias-free linear layer whose single parameter is <c>weight</c> [out, in].</summary>
public sealed class Linear : nn.Module<Tensor, Tensor>
{
    readonly Parameter weight;

    /// <summary>Creates a zero-initialised layer (weights come from a checkpoint).</summary>
    public Linear(long inFeatures, long outFeatures, ScalarType dtype, Device device) : base("Linear")
    {
        weight = P.Make(new[] { outFeatures, inFeatures }, dtype, device);
        RegisterComponents();
    }

    /// <summary>The weight [out, in].</summary>
    public Parameter Weight => weight;

    /// <inheritdoc />
    public override Tensor forward(Tensor x) => nn.functional.linear(x, weight);
}

/// <summary>Token embedding with parameter <c>weight</c> [V, H].</summary>
public sealed class Embedding : nn.Module<Tensor, Tensor>
{
    readonly Parameter weight;

    /// <summary>Creates a zero-initialised embedding.</summary>
    public Embedding(long vocab, long hidden, ScalarType dtype, Device device) : base("Embedding")
    {
        weight = P.Make(new[] { vocab, hidden }, dtype, device);
        RegisterComponents();
    }

    /// <inheritdoc />
    public override Tensor forward(Tensor ids) => weight.index_select(0, ids.flatten()).unflatten(0, ids.shape);
}

/// <summary>RMSNorm: weight * x / sqrt(mean(x^2) + eps), statistics in F32.</summary>
public sealed class RmsNorm : nn.Module<Tensor, Tensor>
{
    readonly Parameter weight;
    readonly double _eps;

    /// <summary>Creates a norm with unit weight.</summary>
    public RmsNorm(long dim, double eps, ScalarType dtype, Device device) : base("RmsNorm")
    {
        weight = P.Make(new[] { dim }, dtype, device, ones: true);
        _eps = eps;
        RegisterComponents();
    }

    /// <summary>The epsilon added to the mean square.</summary>
    public double Eps => _eps;

    /// <inheritdoc />
    public override Tensor forward(Tensor x)
    {
        var xf = x.to(ScalarType.Float32);
        var normed = xf * xf.Squared().mean(new long[] { -1 }, keepdim: true).Plus(_eps).rsqrt();
        return weight * normed.to(x.dtype);
    }
}

/// <summary>Multi-head latent attention (DeepSeek-V2/V3 MLA), training form (no KV cache).</summary>
public sealed class MlaAttention : nn.Module<Tensor, AttentionContext, Tensor>
{
    readonly Linear? q_a_proj;
    readonly RmsNorm? q_a_layernorm;
    readonly Linear? q_b_proj;
    readonly Linear? q_proj;
    readonly Linear kv_a_proj_with_mqa;
    readonly RmsNorm kv_a_layernorm;
    readonly Linear kv_b_proj;
    readonly Linear o_proj;
    readonly DeepSeekV3Config _c;
    readonly double _scale;

    /// <summary>
    /// Epsilon of <c>q_a_layernorm</c> and <c>kv_a_layernorm</c>: fixed at 1e-6 whatever <c>rms_norm_eps</c> says, as in
    /// DeepSeek's own code (inference/model.py <c>RMSNorm(q_lora_rank)</c> / <c>RMSNorm(kv_lora_rank)</c>, modeling_deepseek.py
    /// <c>DeepseekV3RMSNorm(q_lora_rank)</c>) and transformers' modeling_deepseek_v3.py (src/Model/README.md).
    /// </summary>
    public const double LowRankNormEps = 1e-6;

    /// <summary>Creates the attention block for <paramref name="c"/>.</summary>
    public MlaAttention(DeepSeekV3Config c, ScalarType dtype, Device device) : base("MlaAttention")
    {
        _c = c;
        int h = c.HiddenSize, nh = c.NumAttentionHeads;
        if (c.QLoraRank is int r)
        {
            q_a_proj = new Linear(h, r, dtype, device);
            q_a_layernorm = new RmsNorm(r, LowRankNormEps, dtype, device);
            q_b_proj = new Linear(r, nh * c.QkHeadDim, dtype, device);
        }
        else q_proj = new Linear(h, nh * c.QkHeadDim, dtype, device);
        kv_a_proj_with_mqa = new Linear(h, c.KvLoraRank + c.QkRopeHeadDim, dtype, device);
        kv_a_layernorm = new RmsNorm(c.KvLoraRank, LowRankNormEps, dtype, device);
        kv_b_proj = new Linear(c.KvLoraRank, nh * (c.QkNopeHeadDim + c.VHeadDim), dtype, device);
        o_proj = new Linear(nh * c.VHeadDim, h, dtype, device);
        _scale = Rope.SoftmaxScale(c);
        RegisterComponents();
    }

    /// <summary><c>q_a_layernorm</c> (null without q_lora_rank).</summary>
    public RmsNorm? QALayerNorm => q_a_layernorm;
    /// <summary><c>kv_a_layernorm</c>.</summary>
    public RmsNorm KvALayerNorm => kv_a_layernorm;

    /// <inheritdoc />
    public override Tensor forward(Tensor x, AttentionContext ctx)
    {
        long b = x.shape[0], s = x.shape[1];
        int nh = _c.NumAttentionHeads, nope = _c.QkNopeHeadDim, rope = _c.QkRopeHeadDim, vd = _c.VHeadDim;
        var q = q_proj is not null ? q_proj.forward(x) : q_b_proj!.forward(q_a_layernorm!.forward(q_a_proj!.forward(x)));
        q = q.view(b, s, nh, _c.QkHeadDim).transpose(1, 2);                      // [B,nh,S,qk]
        var qNope = q.narrow(-1, 0, nope);
        var qPe = Rope.Apply(q.narrow(-1, nope, rope), ctx.Cos, ctx.Sin, _c.RopeInterleave);
        var ckv = kv_a_proj_with_mqa.forward(x);                                  // [B,S,kv_lora+rope]
        var compressed = ckv.narrow(-1, 0, _c.KvLoraRank);
        var kPe = Rope.Apply(ckv.narrow(-1, _c.KvLoraRank, rope).view(b, 1, s, rope), ctx.Cos, ctx.Sin, _c.RopeInterleave);
        var kv = kv_b_proj.forward(kv_a_layernorm.forward(compressed)).view(b, s, nh, nope + vd).transpose(1, 2);
        var kNope = kv.narrow(-1, 0, nope);
        var v = kv.narrow(-1, nope, vd);
        var k = cat(new[] { kNope, kPe.expand(b, nh, s, rope) }, -1);
        var qq = cat(new[] { qNope, qPe }, -1);
        var scores = matmul(qq, k.transpose(-2, -1)).to(ScalarType.Float32).Times(_scale);
        scores = scores.FillWhere(ctx.Mask.logical_not(), double.NegativeInfinity);
        var probs = scores.softmax(-1).to(x.dtype);
        var o = matmul(probs, v).transpose(1, 2).reshape(b, s, nh * vd);
        return o_proj.forward(o);
    }
}

/// <summary>SwiGLU MLP with gate_proj / up_proj / down_proj (dense layers and shared experts).</summary>
public sealed class SwiGluMlp : nn.Module<Tensor, Tensor>
{
    readonly Linear gate_proj;
    readonly Linear up_proj;
    readonly Linear down_proj;

    /// <summary>Creates an MLP of width <paramref name="inter"/>.</summary>
    public SwiGluMlp(long hidden, long inter, ScalarType dtype, Device device) : base("SwiGluMlp")
    {
        gate_proj = new Linear(hidden, inter, dtype, device);
        up_proj = new Linear(hidden, inter, dtype, device);
        down_proj = new Linear(inter, hidden, dtype, device);
        RegisterComponents();
    }

    /// <inheritdoc />
    public override Tensor forward(Tensor x) => down_proj.forward(nn.functional.silu(gate_proj.forward(x)) * up_proj.forward(x));
}

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

/// <summary>
/// Stacked routed experts of every family: <c>gate_up_proj</c> [E, 2I, H] (gate rows first) and
/// <c>down_proj</c> [E, H, I], expert e computing down(act(gate x, up x)).
/// </summary>
public sealed class Experts : nn.Module<Tensor, Tensor, Tensor, Tensor>
{
    readonly Parameter gate_up_proj;
    readonly Parameter down_proj;
    readonly int _e, _inter;
    readonly Func<Tensor, Tensor, Tensor> _act;

    /// <summary>Creates the expert stack; <paramref name="activation"/>(gate, up) defaults to silu(gate) * up (SwiGLU).</summary>
    public Experts(int experts, int inter, int hidden, ScalarType dtype, Device device, Func<Tensor, Tensor, Tensor>? activation = null) : base("Experts")
    {
        _e = experts;
        _inter = inter;
        _act = activation ?? ((g, u) => nn.functional.silu(g) * u);
        gate_up_proj = P.Make(new long[] { _e, 2L * _inter, hidden }, dtype, device);
        down_proj = P.Make(new long[] { _e, hidden, _inter }, dtype, device);
        RegisterComponents();
    }

    /// <summary>DeepSeek-V3's experts (SwiGLU).</summary>
    public Experts(DeepSeekV3Config c, ScalarType dtype, Device device) : this(c.NRoutedExperts, c.MoeIntermediateSize, c.HiddenSize, dtype, device) { }

    /// <summary>x [N, H], chosen indices [N, k], weights [N, k] → weighted sum of expert outputs [N, H].</summary>
    public override Tensor forward(Tensor x, Tensor indices, Tensor weights)
    {
        var output = zeros_like(x);
        // Which (token, slot) pairs go to which expert: one host sync, then a loop over used experts.
        var flatIdx = indices.flatten().cpu().data<long>().ToArray();
        int k = (int)indices.shape[1];
        var lists = new List<long>[_e];
        for (int p = 0; p < flatIdx.Length; p++) (lists[flatIdx[p]] ??= new List<long>()).Add(p);
        var flatW = weights.flatten();
        for (int ex = 0; ex < _e; ex++)
        {
            if (lists[ex] is not { } pos) continue;
            using var posT = tensor(pos.ToArray(), device: x.device);
            var tok = posT.FloorDividedBy(k);
            var xe = x.index_select(0, tok);
            var gu = nn.functional.linear(xe, gate_up_proj[ex]);
            var h = _act(gu.narrow(-1, 0, _inter), gu.narrow(-1, _inter, _inter));
            var y = nn.functional.linear(h, down_proj[ex]);
            var w = flatW.index_select(0, posT).unsqueeze(-1).to(y.dtype);
            output = output.IndexAdd(0, tok, y * w);
        }
        return output;
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

/// <summary>One decoder block: pre-norm MLA attention and pre-norm MLP (dense or MoE), residuals.</summary>
public sealed class DecoderLayer : nn.Module<Tensor, AttentionContext, Tensor>
{
    readonly RmsNorm input_layernorm;
    readonly MlaAttention self_attn;
    readonly RmsNorm post_attention_layernorm;
    readonly nn.Module<Tensor, Tensor> mlp;

    /// <summary>Creates a block; <paramref name="moe"/> picks the MLP kind.</summary>
    public DecoderLayer(DeepSeekV3Config c, bool moe, ScalarType dtype, Device device) : base("DecoderLayer")
    {
        input_layernorm = new RmsNorm(c.HiddenSize, c.RmsNormEps, dtype, device);
        self_attn = new MlaAttention(c, dtype, device);
        post_attention_layernorm = new RmsNorm(c.HiddenSize, c.RmsNormEps, dtype, device);
        mlp = moe ? new MoeBlock(c, dtype, device) : new SwiGluMlp(c.HiddenSize, c.IntermediateSize, dtype, device);
        RegisterComponents();
    }

    /// <inheritdoc />
    public override Tensor forward(Tensor x, AttentionContext ctx) => Block(input_layernorm, self_attn, post_attention_layernorm, mlp, x, ctx);

    internal static Tensor Block(RmsNorm n1, MlaAttention attn, RmsNorm n2, nn.Module<Tensor, Tensor> mlp, Tensor x, AttentionContext ctx)
    {
        var h = x.Plus(attn.forward(n1.forward(x), ctx));
        return h.Plus(mlp.forward(n2.forward(h)));
    }
}
