using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Mtp.Model;

// Field names in these modules ARE the parameter names (TorchSharp registers fields by name).
#pragma warning disable IDE1006

/// <summary>DeepSeek-V3.2's sparse attention: the indexer's width and how many keys each query keeps.</summary>
/// <param name="Heads">index_n_heads.</param>
/// <param name="HeadDim">index_head_dim.</param>
/// <param name="TopK">index_topk.</param>
/// <param name="RopeInterleave">
/// indexer_rope_interleave: RoPE on adjacent pairs rather than rotate-half. DeepSeek-V3.2's indexer rotates halves; GLM-5's
/// rotates pairs (its config says <c>indexer_rope_interleave: true</c>; vLLM reads the key with false as default,
/// transformers 5.17's GlmMoeDsaIndexer always rotates pairs, 5.12's rotated halves).
/// </param>
internal sealed record IndexerConfig(int Heads, int HeadDim, int TopK, bool RopeInterleave = false);

/// <summary>
/// DeepSeek-V3.2's lightning indexer (<c>self_attn.indexer.*</c>, as transformers' <c>DeepseekV32Indexer</c>): query
/// heads <c>wq_b</c>(q low-rank), one key <c>k_norm</c>(<c>wk</c>(x)) with LayerNorm, RoPE (rotate-half, or pairs for GLM-5)
/// on the first qk_rope_head_dim dims of both, and the score Σ_h relu(q_h·k / sqrt(d)) · w_h / sqrt(H) with w = <c>weights_proj</c>(x).
/// Each query attends only to its index_topk best-scoring visible keys. The release's Hadamard rotation is orthogonal on
/// q and k (scores unchanged) and its FP8 scoring is a precision shortcut; neither is reproduced. No loss trains the
/// indexer here (DeepSeek trains it with a KL loss against the attention): the selection passes no gradient.
/// </summary>
internal sealed class SparseIndexer : nn.Module
{
    readonly Linear wq_b;
    readonly Linear wk;
    readonly LayerNorm k_norm;
    readonly Linear weights_proj;
    readonly IndexerConfig _c;

    /// <summary>Creates the indexer of a layer with <paramref name="qLoraRank"/> and <paramref name="hidden"/>.</summary>
    public SparseIndexer(IndexerConfig c, int hidden, int qLoraRank, ScalarType dtype, Device device) : base("SparseIndexer")
    {
        _c = c;
        wq_b = new Linear(qLoraRank, (long)c.Heads * c.HeadDim, dtype, device);
        wk = new Linear(hidden, c.HeadDim, dtype, device);
        k_norm = new LayerNorm(c.HeadDim, 1e-6, device);
        weights_proj = new Linear(hidden, c.Heads, dtype, device);
        RegisterComponents();
    }

    /// <summary>Whether a row of <paramref name="seqLen"/> tokens can need a selection: with at most index_topk keys every visible key is kept.</summary>
    public bool Selects(long seqLen) => seqLen > _c.TopK;

    /// <summary>Index scores [B, S, S] in F32, −inf where <paramref name="allowed"/> [B, 1, S, S] is false.</summary>
    public Tensor Scores(Tensor x, Tensor qResid, Tensor cos, Tensor sin, Tensor allowed)
    {
        long b = x.shape[0], s = x.shape[1];
        var q = Rope.ApplyPartial(wq_b.forward(qResid).view(b, s, _c.Heads, _c.HeadDim).transpose(1, 2), cos, sin, _c.RopeInterleave).to(ScalarType.Float32); // [B,H,S,d]
        var k = Rope.ApplyPartial(k_norm.forward(wk.forward(x)).unsqueeze(1), cos, sin, _c.RopeInterleave).to(ScalarType.Float32);          // [B,1,S,d]
        var scores = matmul(q, k.transpose(-2, -1)).Times(1.0 / Math.Sqrt(_c.HeadDim)).relu();                                            // [B,H,S,S]
        var w = weights_proj.forward(x).to(ScalarType.Float32).Times(1.0 / Math.Sqrt(_c.Heads));                                           // [B,S,H]
        var index = (scores * w.transpose(1, 2).unsqueeze(-1)).sum(1);                                                                   // [B,S,S]
        return index.FillWhere(allowed.squeeze(1).logical_not(), double.NegativeInfinity);
    }

    /// <summary>
    /// [B, 1, S, S]: the allowed keys among each query's index_topk best, equal scores going to the earlier key (a stable
    /// descending sort, so a packed document keeps the keys it keeps alone: its keys keep their order and the others are −inf).
    /// </summary>
    public Tensor Select(Tensor x, Tensor qResid, Tensor cos, Tensor sin, Tensor allowed)
    {
        using var _ = no_grad();
        var score = Scores(x, qResid, cos, sin, allowed);
        int k = (int)Math.Min(_c.TopK, score.shape[^1]);
        var idx = score.sort(dim: -1, descending: true, stable: true).Indices.narrow(-1, 0, k);
        var sel = zeros(score.shape, dtype: ScalarType.Bool, device: score.device).scatter(-1, idx, ones_like(idx, dtype: ScalarType.Bool));
        return sel.unsqueeze(1).logical_and(allowed);
    }
}
