using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Mtp.Model;

// Field names in these modules ARE the parameter names (TorchSharp registers fields by name).
#pragma warning disable IDE1006

/// <summary>
/// Lightning indexer of ratio-4 layers (<c>q_b_proj</c>, <c>scorer.weights_proj</c>, and its own compressor's
/// <c>kv_proj</c>, <c>gate_proj</c>, <c>position_bias</c>, <c>kv_norm</c> flat beside them, as transformers): scores
/// Σ_h relu(q_h · k_c) · w_h over the visible compressed entries and keeps the <c>index_topk</c> best per query.
/// The Hadamard rotation of the reference is orthogonal on both q and k and so leaves the scores unchanged;
/// its FP4 activation simulation is not reproduced.
/// </summary>
internal sealed class Indexer : nn.Module
{
    readonly Linear q_b_proj;
    readonly IndexerScorer scorer;
    readonly Linear kv_proj;
    readonly Linear gate_proj;
    readonly Parameter position_bias;
    readonly RmsNorm kv_norm;
    readonly CompressorPool _pool;
    readonly int _nh, _hd, _rd, _topk;

    /// <summary>Creates the indexer.</summary>
    public Indexer(DeepSeekV4Config c, int ratio, ScalarType dtype, Device device) : base("Indexer")
    {
        _nh = c.IndexNHeads; _hd = c.IndexHeadDim; _rd = c.QkRopeHeadDim; _topk = c.IndexTopk;
        q_b_proj = new Linear(c.QLoraRank, (long)_nh * _hd, dtype, device);
        scorer = new IndexerScorer(c, dtype, device);
        (kv_proj, gate_proj, position_bias, kv_norm) = CompressorPool.Weights(c, ratio, _hd, dtype, device);
        _pool = new CompressorPool(c, ratio, _hd);
        RegisterComponents();
    }

    /// <summary>The indexer's own compressed keys [B, C, index_head_dim] of x [B, S, H].</summary>
    public Tensor Keys(Tensor x, CompressPlan plan, Tensor cosC, Tensor sinC) => _pool.Run(kv_proj, gate_proj, position_bias, kv_norm, x, plan, cosC, sinC);

    /// <summary>Index scores [B, S, C] (−inf where not visible).</summary>
    public Tensor Scores(Tensor x, Tensor qr, Tensor cos, Tensor sin, CompressPlan plan, Tensor cosC, Tensor sinC)
    {
        long b = x.shape[0], s = x.shape[1];
        var q = q_b_proj.forward(qr).view(b, s, _nh, _hd);
        q = V4Rope.ApplyTail(q, cos.unsqueeze(2), sin.unsqueeze(2), _rd).to(ScalarType.Float32);
        var k = Keys(x, plan, cosC, sinC).to(ScalarType.Float32);      // [B, C, d]
        var w = scorer.Weights(x).to(ScalarType.Float32).Times(Math.Pow(_hd, -0.5) * Math.Pow(_nh, -0.5));
        var sc = einsum("bshd,bcd->bshc", q, k).relu();
        var score = (sc * w.unsqueeze(-1)).sum(2);                                    // [B, S, C]
        return score.FillWhere(plan.Visible.squeeze(1).logical_not(), double.NegativeInfinity);
    }

    /// <summary>
    /// [B, 1, S, C]: the visible entries among each query's top index_topk scores, equal scores going to the earlier
    /// entry. After relu many scores are exactly equal (often 0); topk would pick among them by an order that depends
    /// on the row's length and on the other documents packed in it. A stable descending sort ranks by (score, entry)
    /// instead: a sequence's entries keep their order in any row and everything not visible is −inf, so the entries
    /// chosen for a document are the same alone or packed with others.
    /// </summary>
    public Tensor Select(Tensor x, Tensor qr, Tensor cos, Tensor sin, CompressPlan plan, Tensor cosC, Tensor sinC)
    {
        using var _ = no_grad();
        var score = Scores(x, qr, cos, sin, plan, cosC, sinC);
        int k = (int)Math.Min(_topk, plan.Count);
        var idx = score.sort(dim: -1, descending: true, stable: true).Indices.narrow(-1, 0, k);
        var sel = zeros(score.shape, dtype: ScalarType.Bool, device: score.device).scatter(-1, idx, ones_like(idx, dtype: ScalarType.Bool));
        return sel.logical_and(plan.Visible.squeeze(1)).unsqueeze(1);
    }
}

/// <summary>The indexer's per-head weights <c>weights_proj</c> (hidden -> index heads), under transformers' <c>scorer</c>.</summary>
internal sealed class IndexerScorer : nn.Module
{
    readonly Linear weights_proj;

    /// <summary>Creates the projection.</summary>
    public IndexerScorer(DeepSeekV4Config c, ScalarType dtype, Device device) : base("IndexerScorer")
    {
        weights_proj = new Linear(c.HiddenSize, c.IndexNHeads, dtype, device);
        RegisterComponents();
    }

    /// <summary>x [B, S, H] -> [B, S, index heads].</summary>
    public Tensor Weights(Tensor x) => weights_proj.forward(x);
}
