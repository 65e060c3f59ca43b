using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Mtp.Model;

// Field names in these modules ARE the parameter names (TorchSharp registers fields by name).
#pragma warning disable IDE1006

/// <summary>
/// Lightning indexer of ratio-4 layers (<c>wq_b</c>, <c>weights_proj</c>, own <c>compressor</c>): scores
/// Σ_h relu(q_h · k_c) · w_h over the visible compressed entries and keeps the <c>index_topk</c> best per query.
/// The Hadamard rotation of the reference is orthogonal on both q and k and so leaves the scores unchanged;
/// its FP4 activation simulation is not reproduced.
/// </summary>
public sealed class Indexer : nn.Module
{
    readonly Linear wq_b;
    readonly Linear weights_proj;
    readonly Compressor compressor;
    readonly int _nh, _hd, _rd, _topk;

    /// <summary>Creates the indexer.</summary>
    public Indexer(DeepSeekV4Config c, int ratio, ScalarType dtype, Device device) : base("Indexer")
    {
        _nh = c.IndexNHeads; _hd = c.IndexHeadDim; _rd = c.QkRopeHeadDim; _topk = c.IndexTopk;
        wq_b = new Linear(c.QLoraRank, (long)_nh * _hd, dtype, device);
        weights_proj = new Linear(c.HiddenSize, _nh, dtype, device);
        compressor = new Compressor(c, ratio, _hd, dtype, device);
        RegisterComponents();
    }

    /// <summary>Index scores [B, S, C] (−inf where not visible).</summary>
    public Tensor Scores(Tensor x, Tensor qr, Tensor cos, Tensor sin, CompressPlan plan, Tensor cosC, Tensor sinC)
    {
        long b = x.shape[0], s = x.shape[1];
        var q = wq_b.forward(qr).view(b, s, _nh, _hd);
        q = V4Rope.ApplyTail(q, cos.unsqueeze(2), sin.unsqueeze(2), _rd).to(ScalarType.Float32);
        var k = compressor.Forward(x, plan, cosC, sinC).to(ScalarType.Float32);      // [B, C, d]
        var w = weights_proj.forward(x).to(ScalarType.Float32).Times(Math.Pow(_hd, -0.5) * Math.Pow(_nh, -0.5));
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
