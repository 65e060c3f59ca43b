using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Mtp.Model;

// Field names in these modules ARE the parameter names (TorchSharp registers fields by name).
#pragma warning disable IDE1006

/// <summary>
/// DeepSeek-V4 rotary embedding: adjacent pairs (complex view) on the LAST <c>qk_rope_head_dim</c> dims
/// of a head. Pure sliding-window layers use rope_theta without YaRN; layers with a compressor use
/// compress_rope_theta with YaRN frequency interpolation (no mscale on cos/sin).
/// </summary>
public static class V4Rope
{
    /// <summary>Inverse frequencies (length dim/2), YaRN-interpolated when <paramref name="yarn"/> has an original length.</summary>
    public static double[] InverseFrequencies(int dim, double theta, YarnScaling? yarn)
    {
        var inv = new double[dim / 2];
        for (int i = 0; i < dim / 2; i++) inv[i] = 1.0 / Math.Pow(theta, 2.0 * i / dim);
        if (yarn is not YarnScaling y || y.OriginalMaxPositionEmbeddings <= 0) return inv;
        double CorrectionDim(double rotations) => dim * Math.Log(y.OriginalMaxPositionEmbeddings / (rotations * 2 * Math.PI)) / (2 * Math.Log(theta));
        double low = Math.Max(Math.Floor(CorrectionDim(y.BetaFast)), 0);
        double high = Math.Min(Math.Ceiling(CorrectionDim(y.BetaSlow)), dim - 1);
        if (low == high) high += 0.001;
        for (int i = 0; i < dim / 2; i++)
        {
            double smooth = 1 - Math.Clamp((i - low) / (high - low), 0, 1);
            inv[i] = inv[i] / y.Factor * (1 - smooth) + inv[i] * smooth;
        }
        return inv;
    }

    /// <summary>cos, sin [..., dim/2] (F32) for integer positions of any shape.</summary>
    public static (Tensor Cos, Tensor Sin) CosSin(double[] inv, Tensor positions)
    {
        using var scope = NewDisposeScope();
        var angles = positions.to(ScalarType.Float64).unsqueeze(-1) * tensor(inv, dtype: ScalarType.Float64, device: positions.device);
        return (angles.cos().to(ScalarType.Float32).MoveToOuterDisposeScope(), angles.sin().to(ScalarType.Float32).MoveToOuterDisposeScope());
    }

    /// <summary>Rotates the last <paramref name="rd"/> dims of <paramref name="x"/> (cos/sin broadcast to [..., rd/2]); inverse rotates back.</summary>
    public static Tensor ApplyTail(Tensor x, Tensor cos, Tensor sin, int rd, bool inverse = false)
    {
        long d = x.shape[^1];
        var tail = Rope.Apply(x.narrow(-1, d - rd, rd), cos, inverse ? -sin : sin, interleave: true);
        return d == rd ? tail : cat(new[] { x.narrow(-1, 0, d - rd), tail }, -1);
    }
}

/// <summary>
/// Which tokens form each compressed entry of a compress ratio r, per batch row: entry g of a packed
/// sequence pools its tokens g*r .. g*r+r-1 (and, with overlap, the previous group's tokens); query at
/// in-sequence position p sees the entries g &lt; (p+1)/r of its own sequence.
/// </summary>
public sealed class CompressPlan : IDisposable
{
    /// <summary>Entries per row (padded).</summary>
    public long Count { get; }
    /// <summary>[B, C, r] flat token indices (into B*S) of each entry's own group (0 for padding).</summary>
    public Tensor Current { get; }
    /// <summary>[B, C, r] flat token indices of the previous group (0 where none).</summary>
    public Tensor Previous { get; }
    /// <summary>[B, C] true where the previous group exists (g ≥ 1 of a real entry).</summary>
    public Tensor PreviousValid { get; }
    /// <summary>[B, 1, S, C] true where query i may read entry c.</summary>
    public Tensor Visible { get; }

    CompressPlan(long count, Tensor cur, Tensor prev, Tensor prevValid, Tensor visible)
    {
        Count = count; Current = cur; Previous = prev; PreviousValid = prevValid; Visible = visible;
    }

    /// <summary>Builds the plan for ratio <paramref name="r"/>; null when no row has a complete group.</summary>
    public static CompressPlan? Build(long[] cu, long rows, long seqLen, int r, Device device)
    {
        var perRow = new List<(long Seg, long Start, long G, long SegStart)>[rows];
        var seg = Packing.SegmentIds(cu);
        for (int b = 0; b < rows; b++) perRow[b] = new();
        for (int s = 0; s + 1 < cu.Length; s++)
        {
            long len = cu[s + 1] - cu[s], row = cu[s] / seqLen;
            for (long g = 0; g < len / r; g++) perRow[row].Add((s, cu[s] + g * r, g, cu[s]));
        }
        long c = perRow.Max(l => (long)l.Count);
        if (c == 0) return null;
        var cur = new long[rows * c * r];
        var prev = new long[rows * c * r];
        var prevValid = new bool[rows * c];
        var visible = new bool[rows * seqLen * c];
        for (int b = 0; b < rows; b++)
        {
            for (int e = 0; e < perRow[b].Count; e++)
            {
                var (sg, start, g, _) = perRow[b][e];
                for (int t = 0; t < r; t++)
                {
                    cur[(b * c + e) * r + t] = start + t;
                    prev[(b * c + e) * r + t] = g > 0 ? start - r + t : 0;
                }
                prevValid[b * c + e] = g > 0;
            }
            for (long i = 0; i < seqLen; i++)
            {
                long flat = b * seqLen + i;
                long s = seg[flat], p = flat - cu[s];
                for (int e = 0; e < perRow[b].Count; e++)
                {
                    var en = perRow[b][e];
                    visible[(flat) * c + e] = en.Seg == s && en.G < (p + 1) / r;
                }
            }
        }
        return new CompressPlan(c,
            tensor(cur, device: device).view(rows, c, r),
            tensor(prev, device: device).view(rows, c, r),
            tensor(prevValid, device: device).view(rows, c),
            tensor(visible, device: device).view(rows, 1, seqLen, c));
    }

    /// <inheritdoc />
    public void Dispose()
    {
        Current.Dispose(); Previous.Dispose(); PreviousValid.Dispose(); Visible.Dispose();
    }
}

/// <summary>
/// Per-forward inputs of every V4 layer: positions, the sliding-window mask, both rope tables and
/// (lazily) the compression plans. Owns its tensors.
/// </summary>
public sealed class V4Context : IDisposable
{
    readonly Dictionary<int, (CompressPlan? Plan, Tensor? Cos, Tensor? Sin)> _plans = new();
    readonly DeepSeekV4Config _c;
    readonly double[] _invCompress;

    /// <summary>Builds the context for a packed batch [rows, seqLen] with in-sequence positions [rows, seqLen].</summary>
    public V4Context(DeepSeekV4Config c, long[] cu, long rows, long seqLen, Tensor positions, Device device)
    {
        _c = c;
        Cu = cu; Rows = rows; SeqLen = seqLen; Device = device;
        Positions = positions;
        using (var scope = NewDisposeScope())
        {
            var mask = Packing.AttentionMask(cu, rows, seqLen, device);
            var idx = HeldScalars.Arange(seqLen, device);
            var inWindow = (idx.unsqueeze(1) - idx.unsqueeze(0)).LessThan(c.SlidingWindow);     // i - j < window
            WindowMask = mask.logical_and(inWindow).MoveToOuterDisposeScope();
        }
        var invBase = V4Rope.InverseFrequencies(c.QkRopeHeadDim, c.RopeTheta, null);
        _invCompress = V4Rope.InverseFrequencies(c.QkRopeHeadDim, c.CompressRopeTheta, c.Yarn);
        (CosBase, SinBase) = V4Rope.CosSin(invBase, positions);
        (CosCompress, SinCompress) = V4Rope.CosSin(_invCompress, positions);
    }

    /// <summary>cu_seqlens.</summary>
    public long[] Cu { get; }
    /// <summary>Rows B.</summary>
    public long Rows { get; }
    /// <summary>Tokens per row S.</summary>
    public long SeqLen { get; }
    /// <summary>Device.</summary>
    public Device Device { get; }
    /// <summary>[B, S] in-sequence positions.</summary>
    public Tensor Positions { get; }
    /// <summary>[B, 1, S, S]: same sequence, causal, and i - j &lt; sliding_window.</summary>
    public Tensor WindowMask { get; }
    /// <summary>[B, S, rd/2] rope of pure sliding-window layers.</summary>
    public Tensor CosBase { get; }
    /// <summary>[B, S, rd/2].</summary>
    public Tensor SinBase { get; }
    /// <summary>[B, S, rd/2] rope of compressed layers.</summary>
    public Tensor CosCompress { get; }
    /// <summary>[B, S, rd/2].</summary>
    public Tensor SinCompress { get; }

    /// <summary>The plan of ratio <paramref name="r"/> and the rope of its entries (position of each group's first token); null plan when empty.</summary>
    public (CompressPlan? Plan, Tensor? Cos, Tensor? Sin) Plan(int r)
    {
        if (_plans.TryGetValue(r, out var p)) return p;
        // The context owns what it caches (Dispose frees it): detached from the caller's dispose scope, a plan first
        // asked for inside a shorter scope (the frozen main pass, see MtpModel.MainPass) outlives it for the depths.
        var plan = CompressPlan.Build(Cu, Rows, SeqLen, r, Device);
        Tensor? cos = null, sin = null;
        if (plan is not null)
        {
            foreach (var t in new[] { plan.Current, plan.Previous, plan.PreviousValid, plan.Visible }) t.DetachFromDisposeScope();
            using var scope = NewDisposeScope();
            var first = plan.Current.select(-1, 0);                                  // [B, C]
            var pos = Positions.flatten().index_select(0, first.flatten()).view(first.shape);
            var (cc, ss) = V4Rope.CosSin(_invCompress, pos);
            cos = cc.DetachFromDisposeScope();
            sin = ss.DetachFromDisposeScope();
        }
        p = (plan, cos, sin);
        _plans[r] = p;
        return p;
    }

    /// <inheritdoc />
    public void Dispose()
    {
        WindowMask.Dispose(); CosBase.Dispose(); SinBase.Dispose(); CosCompress.Dispose(); SinCompress.Dispose();
        foreach (var (plan, cos, sin) in _plans.Values) { plan?.Dispose(); cos?.Dispose(); sin?.Dispose(); }
    }
}

/// <summary>
/// Hyper-connection math (DeepSeek-V4 mHC): the residual is <c>hc_mult</c> streams [B, S, hc, H].
/// </summary>
public static class HyperConnection
{
    /// <summary>mixes = (flatten(x) · fnᵀ) · rsqrt(mean(flatten(x)²) + normEps), in F32: [B, S, rows of fn].</summary>
    public static Tensor Mixes(Tensor x, Tensor fn, double normEps)
    {
        var xf = x.flatten(2).to(ScalarType.Float32);
        var rs = xf.Squared().mean(new long[] { -1 }, keepdim: true).Plus(normEps).rsqrt();
        return nn.functional.linear(xf, fn.to(ScalarType.Float32)) * rs;
    }

    /// <summary>
    /// pre = sigmoid(m[:hc]·s0 + b) + eps; post = 2·sigmoid(m[hc:2hc]·s1 + b); comb = Sinkhorn(softmax(m[2hc:]·s2 + b) + eps):
    /// a column normalisation, then iters-1 rounds of row then column normalisation (each divides by sum + eps).
    /// </summary>
    public static (Tensor Pre, Tensor Post, Tensor Comb) Split(Tensor mixes, Tensor scale, Tensor bas, int hc, int iters, double eps)
    {
        var s = scale.to(ScalarType.Float32);
        var b = bas.to(ScalarType.Float32);
        var pre = (mixes.narrow(-1, 0, hc) * s[0]).Plus(b.narrow(0, 0, hc)).sigmoid().Plus(eps);
        var post = (mixes.narrow(-1, hc, hc) * s[1]).Plus(b.narrow(0, hc, hc)).sigmoid().Times(2.0);
        var shape = mixes.shape[..^1].Concat(new long[] { hc, hc }).ToArray();
        var comb = (mixes.narrow(-1, 2 * hc, hc * hc) * s[2]).Plus(b.narrow(0, 2 * hc, hc * hc)).view(shape);
        comb = comb.softmax(-1).Plus(eps);
        comb = comb / comb.sum(-2, keepdim: true).Plus(eps);
        for (int i = 0; i < iters - 1; i++)
        {
            comb = comb / comb.sum(-1, keepdim: true).Plus(eps);
            comb = comb / comb.sum(-2, keepdim: true).Plus(eps);
        }
        return (pre, post, comb);
    }

    /// <summary>y = Σ_p pre[p] · x[p]: [B, S, hc, H] → [B, S, H] in x's dtype.</summary>
    public static Tensor Collapse(Tensor x, Tensor pre) => (pre.unsqueeze(-1) * x.to(ScalarType.Float32)).sum(2).to(x.dtype);

    /// <summary>out[q] = post[q] · f + Σ_p comb[p, q] · residual[p]: [B, S, hc, H] in f's dtype.</summary>
    public static Tensor Expand(Tensor f, Tensor residual, Tensor post, Tensor comb)
    {
        var mixed = matmul(comb.transpose(-1, -2), residual.to(ScalarType.Float32));
        return (post.unsqueeze(-1) * f.to(ScalarType.Float32).unsqueeze(-2)).Plus(mixed).to(f.dtype);
    }
}

/// <summary>Final stream collapse <c>hc_head</c>: <c>fn</c> [hc, hc*H], <c>base</c> [hc], <c>scale</c> [1] (all F32).</summary>
public sealed class HcHead : nn.Module<Tensor, Tensor>
{
    readonly Parameter fn;
    readonly Parameter @base;
    readonly Parameter scale;
    readonly double _normEps, _hcEps;

    /// <summary>Creates the head.</summary>
    public HcHead(DeepSeekV4Config c, Device device) : base("HcHead")
    {
        fn = P.Make(new long[] { c.HcMult, (long)c.HcMult * c.HiddenSize }, ScalarType.Float32, device);
        @base = P.Make(new long[] { c.HcMult }, ScalarType.Float32, device);
        scale = P.Make(new long[] { 1 }, ScalarType.Float32, device);
        _normEps = c.RmsNormEps;
        _hcEps = c.HcEps;
        RegisterComponents();
    }

    /// <summary>[B, S, hc, H] → [B, S, H]: pre = sigmoid(mixes·scale + base) + eps, weighted sum of the streams.</summary>
    public override Tensor forward(Tensor x)
    {
        var pre = (HyperConnection.Mixes(x, fn, _normEps) * scale).Plus(@base).sigmoid().Plus(_hcEps);
        return HyperConnection.Collapse(x, pre);
    }
}

/// <summary>
/// KV compressor (<c>wkv</c>, <c>wgate</c>, <c>ape</c> [r, coff*d] F32, <c>norm</c>): each entry is a softmax-gated
/// (per channel) pool of r tokens' projections plus <c>ape</c>; ratio 4 overlaps (coff 2: the first d channels
/// pool the previous group, the second d the own group). RMSNorm, then rope of the group's first position.
/// </summary>
public sealed class Compressor : nn.Module
{
    readonly Linear wkv;
    readonly Linear wgate;
    readonly Parameter ape;
    readonly RmsNorm norm;
    readonly int _r, _d, _rd;
    readonly bool _overlap;

    /// <summary>Creates a compressor of ratio <paramref name="ratio"/> and head dim <paramref name="headDim"/>.</summary>
    public Compressor(DeepSeekV4Config c, int ratio, int headDim, ScalarType dtype, Device device) : base("Compressor")
    {
        _r = ratio; _d = headDim; _rd = c.QkRopeHeadDim; _overlap = ratio == 4;
        int coff = _overlap ? 2 : 1;
        wkv = new Linear(c.HiddenSize, coff * headDim, dtype, device);
        wgate = new Linear(c.HiddenSize, coff * headDim, dtype, device);
        ape = P.Make(new long[] { ratio, coff * headDim }, ScalarType.Float32, device);
        norm = new RmsNorm(headDim, c.RmsNormEps, dtype, device);
        RegisterComponents();
    }

    /// <summary>Compressed entries [B, C, d] of x [B, S, H] for <paramref name="plan"/> (padding entries are finite garbage, masked by the caller).</summary>
    public Tensor Forward(Tensor x, CompressPlan plan, Tensor cos, Tensor sin)
    {
        long b = x.shape[0], c = plan.Count;
        int d = _d, r = _r;
        var xf = x.to(ScalarType.Float32).flatten(0, 1);
        var kv = nn.functional.linear(xf, wkv.Weight.to(ScalarType.Float32));
        var score = nn.functional.linear(xf, wgate.Weight.to(ScalarType.Float32));
        Tensor Gather(Tensor t, Tensor idx) => t.index_select(0, idx.flatten()).view(b, c, r, t.shape[^1]);
        var apeF = ape.to(ScalarType.Float32);
        Tensor kvAll, scAll;
        if (_overlap)
        {
            var kCur = Gather(kv, plan.Current).narrow(-1, d, d);
            var sCur = Gather(score, plan.Current).narrow(-1, d, d).Plus(apeF.narrow(-1, d, d));
            var kPrev = Gather(kv, plan.Previous).narrow(-1, 0, d);
            var sPrev = Gather(score, plan.Previous).narrow(-1, 0, d).Plus(apeF.narrow(-1, 0, d))
                .FillWhere(plan.PreviousValid.logical_not().view(b, c, 1, 1), double.NegativeInfinity);
            kvAll = cat(new[] { kPrev, kCur }, 2);
            scAll = cat(new[] { sPrev, sCur }, 2);
        }
        else
        {
            kvAll = Gather(kv, plan.Current);
            scAll = Gather(score, plan.Current).Plus(apeF);
        }
        var pooled = (kvAll * scAll.softmax(2)).sum(2);                               // [B, C, d]
        var normed = norm.forward(pooled.to(x.dtype));
        return V4Rope.ApplyTail(normed, cos, sin, _rd);
    }
}

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

/// <summary>
/// DeepSeek-V4 attention (training form, dense masks): low-rank q with per-head RMS scaling, one shared
/// KV head (key = value) with partial rope, sliding window plus (ratio &gt; 0) compressed entries
/// (selected by the indexer at ratio 4), a per-head sink in the softmax denominator, inverse rope on
/// the output, grouped low-rank output.
/// </summary>
public sealed class V4Attention : nn.Module
{
    readonly Linear wq_a;
    readonly RmsNorm q_norm;
    readonly Linear wq_b;
    readonly Linear wkv;
    readonly RmsNorm kv_norm;
    readonly Linear wo_a;
    readonly Linear wo_b;
    readonly Parameter attn_sink;
    readonly Compressor? compressor;
    readonly Indexer? indexer;
    readonly DeepSeekV4Config _c;
    readonly int _ratio;

    /// <summary>Creates the attention of a layer with compress ratio <paramref name="ratio"/>.</summary>
    public V4Attention(DeepSeekV4Config c, int ratio, ScalarType dtype, Device device) : base("V4Attention")
    {
        _c = c; _ratio = ratio;
        int h = c.HiddenSize, nh = c.NumAttentionHeads, hd = c.HeadDim;
        wq_a = new Linear(h, c.QLoraRank, dtype, device);
        q_norm = new RmsNorm(c.QLoraRank, c.RmsNormEps, dtype, device);
        wq_b = new Linear(c.QLoraRank, (long)nh * hd, dtype, device);
        wkv = new Linear(h, hd, dtype, device);
        kv_norm = new RmsNorm(hd, c.RmsNormEps, dtype, device);
        wo_a = new Linear((long)nh * hd / c.OGroups, (long)c.OGroups * c.OLoraRank, dtype, device);
        wo_b = new Linear((long)c.OGroups * c.OLoraRank, h, dtype, device);
        attn_sink = P.Make(new long[] { nh }, ScalarType.Float32, device);
        if (ratio > 0)
        {
            compressor = new Compressor(c, ratio, hd, dtype, device);
            if (ratio == 4) indexer = new Indexer(c, ratio, dtype, device);
        }
        RegisterComponents();
    }

    /// <summary>The layer's compress ratio (0: sliding window only).</summary>
    public int Ratio => _ratio;
    /// <summary>The indexer (ratio 4 only).</summary>
    public Indexer? IndexerModule => indexer;
    /// <summary>The compressor (ratio &gt; 0 only).</summary>
    public Compressor? CompressorModule => compressor;

    /// <summary>x [B, S, H] (after attn_norm) → [B, S, H].</summary>
    public Tensor Forward(Tensor x, V4Context ctx)
    {
        long b = x.shape[0], s = x.shape[1];
        int nh = _c.NumAttentionHeads, hd = _c.HeadDim, rd = _c.QkRopeHeadDim;
        var (cos, sin) = _ratio > 0 ? (ctx.CosCompress, ctx.SinCompress) : (ctx.CosBase, ctx.SinBase);
        var qr = q_norm.forward(wq_a.forward(x));
        var q = wq_b.forward(qr).view(b, s, nh, hd);
        var qf = q.to(ScalarType.Float32);
        q = (qf * qf.Squared().mean(new long[] { -1 }, keepdim: true).Plus(_c.RmsNormEps).rsqrt()).to(x.dtype);
        q = V4Rope.ApplyTail(q, cos.unsqueeze(2), sin.unsqueeze(2), rd).transpose(1, 2);   // [B, nh, S, hd]
        var kv = V4Rope.ApplyTail(kv_norm.forward(wkv.forward(x)), cos, sin, rd);           // [B, S, hd]
        double scale = 1.0 / Math.Sqrt(hd);
        var scores = matmul(q, kv.unsqueeze(1).transpose(-2, -1)).to(ScalarType.Float32).Times(scale);
        scores = scores.FillWhere(ctx.WindowMask.logical_not(), double.NegativeInfinity);
        var values = kv;
        if (_ratio > 0)
        {
            var (plan, cosC, sinC) = ctx.Plan(_ratio);
            if (plan is not null)
            {
                var ckv = compressor!.Forward(x, plan, cosC!, sinC!);                        // [B, C, hd]
                var visible = indexer is null ? plan.Visible : indexer.Select(x, qr, cos, sin, plan, cosC!, sinC!);
                var cs = matmul(q, ckv.unsqueeze(1).transpose(-2, -1)).to(ScalarType.Float32).Times(scale);
                cs = cs.FillWhere(visible.logical_not(), double.NegativeInfinity);
                scores = cat(new[] { scores, cs }, -1);
                values = cat(new[] { kv, ckv.to(kv.dtype) }, 1);
            }
        }
        var probs = WithSink(scores, attn_sink).to(x.dtype);
        var o = matmul(probs, values.unsqueeze(1)).transpose(1, 2);                          // [B, S, nh, hd]
        o = V4Rope.ApplyTail(o, cos.unsqueeze(2), sin.unsqueeze(2), rd, inverse: true);
        int g = _c.OGroups;
        var og = o.reshape(b, s, g, (long)nh * hd / g);
        var wa = wo_a.Weight.view(g, _c.OLoraRank, (long)nh * hd / g);
        var low = einsum("bsgd,grd->bsgr", og, wa).flatten(2);
        return wo_b.forward(low);
    }

    /// <summary>softmax over [scores, sink_h] with the sink column dropped: exp(s_j) / (Σ exp(s) + exp(sink_h)). scores [B, nh, S, K] F32.</summary>
    public static Tensor WithSink(Tensor scores, Tensor sink)
    {
        var sk = sink.to(ScalarType.Float32).view(1, -1, 1, 1).expand(scores.shape[0], scores.shape[1], scores.shape[2], 1);
        var all = cat(new[] { scores, sk }, -1).softmax(-1);
        return all.narrow(-1, 0, scores.shape[^1]);
    }
}

/// <summary>SwiGLU with clamping (V4): gate ≤ limit, −limit ≤ up ≤ limit (no clamp when limit ≤ 0).</summary>
public static class V4Swiglu
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
public sealed class V4SharedExpert : nn.Module<Tensor, Tensor>
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
/// choose the top-k of score + <c>bias</c> (F32 buffer, selection only); hash layers take <c>tid2eid</c>[token]
/// (I32 buffer). Weights: the unbiased scores of the chosen experts, divided by their sum unless scoring is softmax,
/// times routed_scaling_factor. Logits are computed in F32 from F32 copies of x and the weight whatever the model
/// dtype. Both as DeepSeek's V4 inference/model.py <c>Gate.forward</c>, which has no norm_topk_prob (src/Model/README.md).
/// </summary>
public sealed class V4Gate : nn.Module
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
        else register_buffer("bias", zeros(c.NRoutedExperts, dtype: ScalarType.Float32, device: device));
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
                idx = scores.Plus(get_buffer("bias")!.unsqueeze(0)).topk(_c.NumExpertsPerTok, dim: -1).indexes;
        var w = scores.gather(1, idx);
        if (_c.ScoringFunc != "softmax") w = w / w.sum(-1, keepdim: true);
        return (idx, w.Times(_c.RoutedScalingFactor));
    }
}

/// <summary>V4 MoE <c>mlp</c>: <c>gate</c>, <c>experts</c>, <c>shared_experts</c>.</summary>
public sealed class V4Moe : nn.Module
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

    /// <summary>x [B, S, H] (after ffn_norm), token ids [B, S] → [B, S, H].</summary>
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

/// <summary>The pieces of one V4 block (a main layer or an MTP depth's block, whose names sit flat under the depth).</summary>
internal sealed record V4BlockParts(RmsNorm AttnNorm, V4Attention Attn, RmsNorm FfnNorm, V4Moe Mlp,
    Parameter AttnFn, Parameter AttnBase, Parameter AttnScale, Parameter FfnFn, Parameter FfnBase, Parameter FfnScale)
{
    /// <summary>hc_pre → attn_norm → attn → hc_post; hc_pre → ffn_norm → MoE → hc_post. x [B, S, hc, H].</summary>
    public Tensor Run(DeepSeekV4Config c, Tensor x, Tensor ids, V4Context ctx)
    {
        var (pre, post, comb) = HyperConnection.Split(HyperConnection.Mixes(x, AttnFn, c.RmsNormEps), AttnScale, AttnBase, c.HcMult, c.HcSinkhornIters, c.HcEps);
        var a = Attn.Forward(AttnNorm.forward(HyperConnection.Collapse(x, pre)), ctx);
        x = HyperConnection.Expand(a, x, post, comb);
        (pre, post, comb) = HyperConnection.Split(HyperConnection.Mixes(x, FfnFn, c.RmsNormEps), FfnScale, FfnBase, c.HcMult, c.HcSinkhornIters, c.HcEps);
        var f = Mlp.Forward(FfnNorm.forward(HyperConnection.Collapse(x, pre)), ids);
        return HyperConnection.Expand(f, x, post, comb);
    }

    internal static Parameter Mix(DeepSeekV4Config c, bool fn, Device device) => fn
        ? P.Make(new long[] { (2L + c.HcMult) * c.HcMult, (long)c.HcMult * c.HiddenSize }, ScalarType.Float32, device)
        : P.Make(new long[] { (2L + c.HcMult) * c.HcMult }, ScalarType.Float32, device);

    internal static Parameter Scale(Device device) => P.Make(new long[] { 3 }, ScalarType.Float32, device);
}

/// <summary>One main V4 layer <c>model.layers.{i}</c>.</summary>
public sealed class V4Block : nn.Module
{
    readonly RmsNorm attn_norm;
    readonly V4Attention attn;
    readonly RmsNorm ffn_norm;
    readonly V4Moe mlp;
    readonly Parameter hc_attn_fn;
    readonly Parameter hc_attn_base;
    readonly Parameter hc_attn_scale;
    readonly Parameter hc_ffn_fn;
    readonly Parameter hc_ffn_base;
    readonly Parameter hc_ffn_scale;
    readonly DeepSeekV4Config _c;

    /// <summary>Creates layer <paramref name="layer"/>.</summary>
    public V4Block(DeepSeekV4Config c, int layer, ScalarType dtype, Device device) : base("V4Block")
    {
        _c = c;
        attn_norm = new RmsNorm(c.HiddenSize, c.RmsNormEps, dtype, device);
        attn = new V4Attention(c, c.CompressRatio(layer), dtype, device);
        ffn_norm = new RmsNorm(c.HiddenSize, c.RmsNormEps, dtype, device);
        mlp = new V4Moe(c, c.IsHashLayer(layer), dtype, device);
        hc_attn_fn = V4BlockParts.Mix(c, true, device);
        hc_attn_base = V4BlockParts.Mix(c, false, device);
        hc_attn_scale = V4BlockParts.Scale(device);
        hc_ffn_fn = V4BlockParts.Mix(c, true, device);
        hc_ffn_base = V4BlockParts.Mix(c, false, device);
        hc_ffn_scale = V4BlockParts.Scale(device);
        RegisterComponents();
    }

    /// <summary>The attention.</summary>
    public V4Attention Attention => attn;
    /// <summary>The MoE.</summary>
    public V4Moe Mlp => mlp;

    /// <summary>x [B, S, hc, H], ids [B, S] → [B, S, hc, H].</summary>
    public Tensor Forward(Tensor x, Tensor ids, V4Context ctx) =>
        new V4BlockParts(attn_norm, attn, ffn_norm, mlp, hc_attn_fn, hc_attn_base, hc_attn_scale, hc_ffn_fn, hc_ffn_base, hc_ffn_scale).Run(_c, x, ids, ctx);
}
