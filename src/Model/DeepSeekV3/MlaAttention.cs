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
internal sealed record AttentionContext(Tensor Mask, Tensor Cos, Tensor Sin);

/// <summary>Multi-head latent attention (DeepSeek-V2/V3 MLA), training form (no KV cache); with DeepSeek-V3.2's
/// <see cref="SparseIndexer"/> when the config has one.</summary>
internal sealed class MlaAttention : nn.Module<Tensor, AttentionContext, Tensor>
{
    readonly Linear? q_a_proj;
    readonly RmsNorm? q_a_layernorm;
    readonly Linear? q_b_proj;
    readonly Linear? q_proj;
    readonly Linear kv_a_proj_with_mqa;
    readonly RmsNorm kv_a_layernorm;
    readonly Linear kv_b_proj;
    readonly Linear o_proj;
    readonly SparseIndexer? indexer;
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
        if (c.Indexer is IndexerConfig ix) indexer = new SparseIndexer(ix, h, c.QLoraRank ?? 0, dtype, device);
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
        var qResid = q_proj is null ? q_a_layernorm!.forward(q_a_proj!.forward(x)) : null;
        var q = q_proj is not null ? q_proj.forward(x) : q_b_proj!.forward(qResid!);
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
        // DeepSeek-V3.2: only the indexer's top keys, once a row is longer than index_topk (before that it keeps them all).
        var mask = indexer is not null && indexer.Selects(s) ? indexer.Select(x, qResid!, ctx.Cos, ctx.Sin, ctx.Mask) : ctx.Mask;
        return o_proj.forward(MaskedAttention.Forward(qq, k, v, mask, _scale, x.dtype));
    }
}
