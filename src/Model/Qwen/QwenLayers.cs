using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Mtp.Model.Qwen;

// Field names in these modules ARE the parameter names (TorchSharp registers fields by name), so they
// follow the checkpoint's snake_case.
#pragma warning disable IDE1006

/// <summary>How the Gated DeltaNet recurrence is evaluated (same result up to rounding).</summary>
public enum DeltaRuleMode
{
    /// <summary>Token by token (the reference form).</summary>
    Recurrent,
    /// <summary>Chunked WY form: within-chunk triangular solve, one state update per chunk.</summary>
    Chunked,
}

/// <summary>
/// Packed sequences laid out one per row, so that the linear-attention convolution and recurrence start
/// from zero state at every sequence boundary. <c>Gather</c> [Count*MaxLen] picks flattened tokens (index
/// N = an appended zero row for the padding at each row's end); <c>Scatter</c> [N] maps every token back.
/// </summary>
public sealed record SegmentLayout(Tensor Gather, Tensor Scatter, long Count, long MaxLen)
{
    /// <summary>Builds the layout of cu_seqlens <paramref name="cu"/>.</summary>
    public static SegmentLayout Create(long[] cu, Device device)
    {
        long n = cu[^1], count = cu.Length - 1, maxLen = 0;
        for (int s = 0; s < count; s++) maxLen = Math.Max(maxLen, cu[s + 1] - cu[s]);
        var gather = new long[count * maxLen];
        var scatter = new long[n];
        for (int s = 0; s < count; s++)
            for (long j = 0; j < maxLen; j++)
            {
                long p = cu[s] + j;
                bool real = p < cu[s + 1];
                gather[s * maxLen + j] = real ? p : n;
                if (real) scatter[p] = s * maxLen + j;
            }
        return new SegmentLayout(tensor(gather, device: device), tensor(scatter, device: device), count, maxLen);
    }

    /// <summary>[B, S, C] → [Count, MaxLen, C] (zero padding at the end of each row).</summary>
    public Tensor ToSegments(Tensor x)
    {
        long c = x.shape[^1];
        var flat = x.reshape(-1, c);
        var padded = cat(new[] { flat, zeros(1, c, dtype: x.dtype, device: x.device) }, 0);
        return padded.index_select(0, Gather).view(Count, MaxLen, c);
    }

    /// <summary>[Count, MaxLen, C] → [B, S, C] given the original shape.</summary>
    public Tensor FromSegments(Tensor y, long[] shape) => y.reshape(-1, y.shape[^1]).index_select(0, Scatter).view(shape[0], shape[1], y.shape[^1]);
}

/// <summary>Per-forward inputs shared by all layers of a Qwen model.</summary>
/// <param name="Mask">[B, 1, S, S] bool: causal and same packed sequence (full attention).</param>
/// <param name="Cos">[B, 1, S, rotary/2] F32.</param>
/// <param name="Sin">[B, 1, S, rotary/2] F32.</param>
/// <param name="Segments">One row per packed sequence (linear attention).</param>
/// <param name="Mode">Delta-rule evaluation.</param>
/// <param name="ChunkSize">Chunk length of <see cref="DeltaRuleMode.Chunked"/>.</param>
public sealed record QwenContext(Tensor Mask, Tensor Cos, Tensor Sin, SegmentLayout Segments, DeltaRuleMode Mode, int ChunkSize);

/// <summary>Zero-centred RMSNorm (Qwen3-Next / Qwen3.5): x * rsqrt(mean(x^2) + eps) * (1 + w), in F32.</summary>
public sealed class ZeroCenteredRmsNorm : nn.Module<Tensor, Tensor>
{
    readonly Parameter weight;
    readonly double _eps;

    /// <summary>Creates a norm with w = 0 (identity scale).</summary>
    public ZeroCenteredRmsNorm(long dim, double eps, ScalarType dtype, Device device) : base("ZeroCenteredRmsNorm")
    {
        weight = new Parameter(zeros(dim, dtype: dtype, device: device), requires_grad: true);
        _eps = eps;
        RegisterComponents();
    }

    /// <summary>The weight w.</summary>
    public Parameter Weight => weight;

    /// <inheritdoc />
    public override Tensor forward(Tensor x)
    {
        var xf = x.to(ScalarType.Float32);
        var normed = xf * xf.Squared().mean(new long[] { -1 }, keepdim: true).Plus(_eps).rsqrt();
        return (normed * weight.to(ScalarType.Float32).Plus(1.0)).to(x.dtype);
    }
}

/// <summary>Gated RMSNorm of the linear attention: (w * rmsnorm(x)) * silu(z), plain (not zero-centred) weight.</summary>
public sealed class GatedRmsNorm : nn.Module<Tensor, Tensor, Tensor>
{
    readonly Parameter weight;
    readonly double _eps;

    /// <summary>Creates a norm with unit weight.</summary>
    public GatedRmsNorm(long dim, double eps, ScalarType dtype, Device device) : base("GatedRmsNorm")
    {
        weight = new Parameter(ones(dim, dtype: dtype, device: device), requires_grad: true);
        _eps = eps;
        RegisterComponents();
    }

    /// <inheritdoc />
    public override Tensor forward(Tensor x, Tensor z)
    {
        var xf = x.to(ScalarType.Float32);
        var normed = (xf * xf.Squared().mean(new long[] { -1 }, keepdim: true).Plus(_eps).rsqrt()).to(x.dtype);
        var y = weight * normed;
        return (y.to(ScalarType.Float32) * nn.functional.silu(z.to(ScalarType.Float32))).to(x.dtype);
    }
}

/// <summary>Depthwise causal convolution weight holder: <c>weight</c> [channels, 1, kernel].</summary>
public sealed class DepthwiseConv1d : nn.Module<Tensor, Tensor>
{
    readonly Parameter weight;
    readonly long _channels, _kernel;

    /// <summary>Creates a zero kernel.</summary>
    public DepthwiseConv1d(long channels, long kernel, ScalarType dtype, Device device) : base("DepthwiseConv1d")
    {
        _channels = channels;
        _kernel = kernel;
        weight = new Parameter(zeros(new[] { channels, 1L, kernel }, dtype: dtype, device: device), requires_grad: true);
        RegisterComponents();
    }

    /// <summary>x [N, L, C] → causal depthwise convolution [N, L, C] (left zero padding of kernel-1; no activation).</summary>
    public override Tensor forward(Tensor x)
    {
        long l = x.shape[1];
        var y = nn.functional.conv1d(x.transpose(1, 2), weight, padding: _kernel - 1, groups: _channels);
        return y.narrow(-1, 0, l).transpose(1, 2);
    }
}

/// <summary>Rotary helpers of Qwen: partial rotate-half RoPE on the first rotary dims of each head.</summary>
public static class QwenRope
{
    /// <summary>inv_freq[i] = theta^(-2i / rotaryDim).</summary>
    public static double[] InverseFrequencies(int rotaryDim, double theta) =>
        Enumerable.Range(0, rotaryDim / 2).Select(i => 1.0 / Math.Pow(theta, 2.0 * i / rotaryDim)).ToArray();

    /// <summary>
    /// cos/sin [B, 1, S, rotary/2] (F32) for positions [B, S]. Qwen3.5 uses interleaved MRoPE; for text-only
    /// input the temporal, height and width positions are all the token position, so every frequency sees the
    /// same position and MRoPE equals this 1-D RoPE (an assumption: no image/video tokens are trained).
    /// </summary>
    public static (Tensor Cos, Tensor Sin) CosSin(int rotaryDim, double theta, Tensor positions)
    {
        using var scope = NewDisposeScope();
        var inv = tensor(InverseFrequencies(rotaryDim, theta), dtype: ScalarType.Float64, device: positions.device);
        var angles = positions.to(ScalarType.Float64).unsqueeze(-1) * inv;
        var cos = angles.cos().to(ScalarType.Float32).unsqueeze(1);
        var sin = angles.sin().to(ScalarType.Float32).unsqueeze(1);
        return (cos.MoveToOuterDisposeScope(), sin.MoveToOuterDisposeScope());
    }

    /// <summary>x [B, h, S, d]: rotate-half on the first 2*cos.shape[-1] dims, the rest passes through.</summary>
    public static Tensor ApplyPartial(Tensor x, Tensor cos, Tensor sin)
    {
        long rd = cos.shape[^1] * 2, d = x.shape[^1];
        var rot = Rope.Apply(x.narrow(-1, 0, rd), cos, sin, interleave: false);
        return rd == d ? rot : cat(new[] { rot, x.narrow(-1, rd, d - rd) }, -1);
    }
}

/// <summary>
/// Gated full attention: q_proj gives query and output gate interleaved per head ([heads, 2*head_dim], split),
/// zero-centred per-head q_norm / k_norm, partial RoPE, grouped-query attention, o_proj(attn * sigmoid(gate)).
/// </summary>
public sealed class QwenAttention : nn.Module<Tensor, QwenContext, Tensor>
{
    readonly Linear q_proj;
    readonly Linear k_proj;
    readonly Linear v_proj;
    readonly Linear o_proj;
    readonly ZeroCenteredRmsNorm q_norm;
    readonly ZeroCenteredRmsNorm k_norm;
    readonly QwenConfig _c;

    /// <summary>Creates the block.</summary>
    public QwenAttention(QwenConfig c, ScalarType dtype, Device device) : base("QwenAttention")
    {
        _c = c;
        int h = c.HiddenSize, hd = c.HeadDim;
        q_proj = new Linear(h, (long)c.NumAttentionHeads * hd * (c.AttnOutputGate ? 2 : 1), dtype, device);
        k_proj = new Linear(h, (long)c.NumKeyValueHeads * hd, dtype, device);
        v_proj = new Linear(h, (long)c.NumKeyValueHeads * hd, dtype, device);
        o_proj = new Linear((long)c.NumAttentionHeads * hd, h, dtype, device);
        q_norm = new ZeroCenteredRmsNorm(hd, c.RmsNormEps, dtype, device);
        k_norm = new ZeroCenteredRmsNorm(hd, c.RmsNormEps, dtype, device);
        RegisterComponents();
    }

    /// <summary>Splits q_proj's output [B, S, heads*2*hd] into query [B, S, heads, hd] and gate [B, S, heads*hd].</summary>
    public static (Tensor Query, Tensor Gate) SplitQueryGate(Tensor qg, int heads, int headDim)
    {
        long b = qg.shape[0], s = qg.shape[1];
        var v = qg.view(b, s, heads, 2 * headDim);
        return (v.narrow(-1, 0, headDim), v.narrow(-1, headDim, headDim).reshape(b, s, (long)heads * headDim));
    }

    /// <inheritdoc />
    public override Tensor forward(Tensor x, QwenContext ctx)
    {
        long b = x.shape[0], s = x.shape[1];
        int nh = _c.NumAttentionHeads, nkv = _c.NumKeyValueHeads, hd = _c.HeadDim;
        Tensor q, gate = null!;
        if (_c.AttnOutputGate) (q, gate) = SplitQueryGate(q_proj.forward(x), nh, hd);
        else q = q_proj.forward(x).view(b, s, nh, hd);
        q = q_norm.forward(q).transpose(1, 2);                                          // [B,nh,S,hd]
        var k = k_norm.forward(k_proj.forward(x).view(b, s, nkv, hd)).transpose(1, 2);  // [B,nkv,S,hd]
        var v = v_proj.forward(x).view(b, s, nkv, hd).transpose(1, 2);
        q = QwenRope.ApplyPartial(q, ctx.Cos, ctx.Sin);
        k = QwenRope.ApplyPartial(k, ctx.Cos, ctx.Sin);
        if (nh != nkv)
        {
            k = k.repeat_interleave(nh / nkv, dim: 1);
            v = v.repeat_interleave(nh / nkv, dim: 1);
        }
        var scores = matmul(q, k.transpose(-2, -1)).to(ScalarType.Float32).Times(1.0 / Math.Sqrt(hd));
        scores = scores.FillWhere(ctx.Mask.logical_not(), double.NegativeInfinity);
        var probs = scores.softmax(-1).to(x.dtype);
        var o = matmul(probs, v).transpose(1, 2).reshape(b, s, (long)nh * hd);
        if (_c.AttnOutputGate) o = o * gate.sigmoid();
        return o_proj.forward(o);
    }
}

/// <summary>The gated delta rule (Gated DeltaNet) on F32, in recurrent and chunked form.</summary>
public static class DeltaRule
{
    /// <summary>x / sqrt(sum(x^2) + 1e-6) over the last dim (fla's l2norm).</summary>
    public static Tensor L2Norm(Tensor x) => x * x.Squared().sum(-1, keepdim: true).Plus(1e-6).rsqrt();

    /// <summary>
    /// q, k [N, L, h, dk], v [N, L, h, dv], g (log decay, ≤ 0) and beta [N, L, h]; every row starts from zero state.
    /// q and k are L2-normalised here, q is scaled by dk^-1/2. Per step: S = exp(g) S; S += k ⊗ beta (v - Sᵀk);
    /// o = Sᵀ q. Returns o [N, L, h, dv] in F32.
    /// </summary>
    public static Tensor Recurrent(Tensor q, Tensor k, Tensor v, Tensor g, Tensor beta)
    {
        var (qq, kk, vv, gg, bb) = Prepare(q, k, v, g, beta);                 // [N,h,L,d], [N,h,L]
        long n = qq.shape[0], h = qq.shape[1], l = qq.shape[2], dk = qq.shape[3], dv = vv.shape[3];
        var state = zeros(new[] { n, h, dk, dv }, dtype: ScalarType.Float32, device: q.device);
        var outs = new Tensor[l];
        for (long t = 0; t < l; t++)
        {
            var kt = kk.select(2, t);                                          // [N,h,dk]
            state = state * gg.select(2, t).exp().unsqueeze(-1).unsqueeze(-1);
            var mem = matmul(kt.unsqueeze(-2), state).squeeze(-2);            // [N,h,dv]
            var delta = (vv.select(2, t) - mem) * bb.select(2, t).unsqueeze(-1);
            state = state.Plus(kt.unsqueeze(-1) * delta.unsqueeze(-2));
            outs[t] = matmul(qq.select(2, t).unsqueeze(-2), state).squeeze(-2);
        }
        return stack(outs, 2).transpose(1, 2);
    }

    /// <summary>
    /// Same result as <see cref="Recurrent"/> by chunks of <paramref name="chunk"/> tokens: inside a chunk the
    /// pseudo-values u solve (I + A) u = beta v - beta Γ K S₀ with A[t,s] = beta_t Γ_t/Γ_s k_t·k_s (s &lt; t), a
    /// unit lower-triangular system; outputs o = (q Γ) S₀ + (q kᵀ ⊙ decay, causal) u; S ← Γ_C S₀ + Σ Γ_C/Γ_s k_s u_sᵀ.
    /// </summary>
    public static Tensor Chunked(Tensor q, Tensor k, Tensor v, Tensor g, Tensor beta, int chunk = 64)
    {
        var (qq, kk, vv, gg, bb) = Prepare(q, k, v, g, beta);
        long n = qq.shape[0], h = qq.shape[1], l = qq.shape[2], dk = qq.shape[3], dv = vv.shape[3];
        long c = Math.Min(chunk, l), pad = (c - l % c) % c, lp = l + pad, nc = lp / c;
        if (pad > 0)
        {
            // Zero tokens at the end of each row: they only follow the real ones, so they change nothing.
            qq = nn.functional.pad(qq, new[] { 0L, 0, 0, pad });
            kk = nn.functional.pad(kk, new[] { 0L, 0, 0, pad });
            vv = nn.functional.pad(vv, new[] { 0L, 0, 0, pad });
            gg = nn.functional.pad(gg, new[] { 0L, pad });
            bb = nn.functional.pad(bb, new[] { 0L, pad });
        }
        qq = qq.view(n, h, nc, c, dk);
        kk = kk.view(n, h, nc, c, dk);
        vv = vv.view(n, h, nc, c, dv);
        var gc = gg.view(n, h, nc, c).cumsum(-1);                               // γ_t within the chunk
        var bt = bb.view(n, h, nc, c).unsqueeze(-1);
        var lower = ones(c, c, dtype: ScalarType.Bool, device: q.device).tril();
        var strict = ones(c, c, dtype: ScalarType.Bool, device: q.device).tril(-1);
        var diff = gc.unsqueeze(-1) - gc.unsqueeze(-2);                        // γ_t - γ_s
        var decay = diff.FillWhere(lower.logical_not(), double.NegativeInfinity).exp();
        var kb = kk * bt;
        var a = (matmul(kb, kk.transpose(-1, -2)) * decay).FillWhere(strict.logical_not(), 0.0);
        var m = a.Plus(eye(c, dtype: ScalarType.Float32, device: q.device));
        var u0 = linalg.solve_triangular(m, vv * bt, upper: false, unitriangular: true);
        var kc = linalg.solve_triangular(m, kb * gc.exp().unsqueeze(-1), upper: false, unitriangular: true);
        var qk = (matmul(qq, kk.transpose(-1, -2)) * decay).FillWhere(lower.logical_not(), 0.0);
        var qDecay = qq * gc.exp().unsqueeze(-1);
        var kTail = kk * (gc.narrow(-1, c - 1, 1) - gc).exp().unsqueeze(-1);
        var lastDecay = gc.select(-1, c - 1).exp().unsqueeze(-1).unsqueeze(-1);  // [N,h,nc,1,1]
        var state = zeros(new[] { n, h, dk, dv }, dtype: ScalarType.Float32, device: q.device);
        var outs = new Tensor[nc];
        for (long i = 0; i < nc; i++)
        {
            var u = u0.select(2, i) - matmul(kc.select(2, i), state);
            outs[i] = matmul(qDecay.select(2, i), state).Plus(matmul(qk.select(2, i), u));
            state = (state * lastDecay.select(2, i)).Plus(matmul(kTail.select(2, i).transpose(-1, -2), u));
        }
        var o = stack(outs, 2).view(n, h, lp, dv);
        if (pad > 0) o = o.narrow(2, 0, l);
        return o.transpose(1, 2);
    }

    static (Tensor Q, Tensor K, Tensor V, Tensor G, Tensor B) Prepare(Tensor q, Tensor k, Tensor v, Tensor g, Tensor beta)
    {
        var qf = L2Norm(q.to(ScalarType.Float32)).Times(1.0 / Math.Sqrt(q.shape[^1]));
        var kf = L2Norm(k.to(ScalarType.Float32));
        return (qf.transpose(1, 2), kf.transpose(1, 2), v.to(ScalarType.Float32).transpose(1, 2),
            g.to(ScalarType.Float32).transpose(1, 2), beta.to(ScalarType.Float32).transpose(1, 2));
    }
}

/// <summary>
/// Gated DeltaNet linear attention. Qwen3.5: <c>in_proj_qkv</c>, <c>in_proj_z</c>, <c>in_proj_b</c>, <c>in_proj_a</c>.
/// Qwen3-Next keeps its fused <c>in_proj_qkvz</c> / <c>in_proj_ba</c> (grouped per key head: [q, k, v, z] and
/// [b, a]); the model unfuses their outputs (the adapter leaves the tensors as released). Then: causal depthwise
/// conv1d + SiLU over [q, k, v] per packed sequence, L2-normalised q and k (key heads repeated to the value heads),
/// beta = sigmoid(b), g = -exp(A_log) * softplus(a + dt_bias), the delta rule from zero state per sequence,
/// gated RMSNorm norm(o) * silu(z), out_proj.
/// </summary>
public sealed class GatedDeltaNet : nn.Module<Tensor, QwenContext, Tensor>
{
    readonly Linear? in_proj_qkv;
    readonly Linear? in_proj_z;
    readonly Linear? in_proj_b;
    readonly Linear? in_proj_a;
    readonly Linear? in_proj_qkvz;
    readonly Linear? in_proj_ba;
    readonly DepthwiseConv1d conv1d;
    readonly Parameter A_log;
    readonly Parameter dt_bias;
    readonly GatedRmsNorm norm;
    readonly Linear out_proj;
    readonly QwenConfig _c;

    /// <summary>Creates the block (A_log is kept in F32).</summary>
    public GatedDeltaNet(QwenConfig c, ScalarType dtype, Device device) : base("GatedDeltaNet")
    {
        _c = c;
        int h = c.HiddenSize, nv = c.LinearNumValueHeads;
        if (c.IsQwen3Next)
        {
            in_proj_qkvz = new Linear(h, 2L * c.LinearKeyDim + 2L * c.LinearValueDim, dtype, device);
            in_proj_ba = new Linear(h, 2L * nv, dtype, device);
        }
        else
        {
            in_proj_qkv = new Linear(h, c.ConvDim, dtype, device);
            in_proj_z = new Linear(h, c.LinearValueDim, dtype, device);
            in_proj_b = new Linear(h, nv, dtype, device);
            in_proj_a = new Linear(h, nv, dtype, device);
        }
        conv1d = new DepthwiseConv1d(c.ConvDim, c.LinearConvKernelDim, dtype, device);
        A_log = new Parameter(zeros(nv, dtype: ScalarType.Float32, device: device), requires_grad: true);
        dt_bias = new Parameter(ones(nv, dtype: dtype, device: device), requires_grad: true);
        norm = new GatedRmsNorm(c.LinearValueHeadDim, c.RmsNormEps, dtype, device);
        out_proj = new Linear(c.LinearValueDim, h, dtype, device);
        RegisterComponents();
    }

    /// <summary>Projections of x [N, L, H]: mixed qkv [N, L, conv], z [N, L, nv, dv], b and a [N, L, nv].</summary>
    (Tensor Qkv, Tensor Z, Tensor B, Tensor A) Project(Tensor x)
    {
        long n = x.shape[0], l = x.shape[1];
        int nk = _c.LinearNumKeyHeads, nv = _c.LinearNumValueHeads, dk = _c.LinearKeyHeadDim, dv = _c.LinearValueHeadDim, r = nv / nk;
        if (in_proj_qkvz is null)
            return (in_proj_qkv!.forward(x), in_proj_z!.forward(x).view(n, l, nv, dv), in_proj_b!.forward(x), in_proj_a!.forward(x));
        var qkvz = in_proj_qkvz.forward(x).view(n, l, nk, 2 * dk + 2 * r * dv);
        var q = qkvz.narrow(-1, 0, dk).reshape(n, l, (long)nk * dk);
        var k = qkvz.narrow(-1, dk, dk).reshape(n, l, (long)nk * dk);
        var v = qkvz.narrow(-1, 2 * dk, r * dv).reshape(n, l, (long)nv * dv);
        var z = qkvz.narrow(-1, 2 * dk + r * dv, r * dv).reshape(n, l, nv, dv);
        var ba = in_proj_ba!.forward(x).view(n, l, nk, 2 * r);
        return (cat(new[] { q, k, v }, -1), z, ba.narrow(-1, 0, r).reshape(n, l, nv), ba.narrow(-1, r, r).reshape(n, l, nv));
    }

    /// <summary>The mixer on rows that are whole sequences: x [N, L, H] → [N, L, H].</summary>
    public Tensor Mix(Tensor x, DeltaRuleMode mode, int chunkSize)
    {
        long n = x.shape[0], l = x.shape[1];
        int nk = _c.LinearNumKeyHeads, nv = _c.LinearNumValueHeads, dk = _c.LinearKeyHeadDim, dv = _c.LinearValueHeadDim;
        var (qkv, z, b, a) = Project(x);
        qkv = nn.functional.silu(conv1d.forward(qkv));
        var q = qkv.narrow(-1, 0, _c.LinearKeyDim).view(n, l, nk, dk);
        var k = qkv.narrow(-1, _c.LinearKeyDim, _c.LinearKeyDim).view(n, l, nk, dk);
        var v = qkv.narrow(-1, 2L * _c.LinearKeyDim, _c.LinearValueDim).view(n, l, nv, dv);
        var beta = b.to(ScalarType.Float32).sigmoid();
        var g = -A_log.to(ScalarType.Float32).exp() * a.to(ScalarType.Float32).Plus(dt_bias.to(ScalarType.Float32)).Softplus();
        if (nv != nk)
        {
            q = q.repeat_interleave(nv / nk, dim: 2);
            k = k.repeat_interleave(nv / nk, dim: 2);
        }
        var o = mode == DeltaRuleMode.Chunked ? DeltaRule.Chunked(q, k, v, g, beta, chunkSize) : DeltaRule.Recurrent(q, k, v, g, beta);
        o = norm.forward(o.to(x.dtype), z);
        return out_proj.forward(o.reshape(n, l, (long)nv * dv));
    }

    /// <inheritdoc />
    public override Tensor forward(Tensor x, QwenContext ctx)
    {
        var seg = ctx.Segments;
        return seg.FromSegments(Mix(seg.ToSegments(x), ctx.Mode, ctx.ChunkSize), x.shape);
    }
}

/// <summary>
/// Qwen MoE block: softmax router <c>gate</c>, top-k (renormalised when configured), stacked <c>experts</c>,
/// <c>shared_expert</c> scaled by sigmoid(<c>shared_expert_gate</c>(x)).
/// </summary>
public sealed class QwenMoe : nn.Module<Tensor, Tensor>
{
    readonly Linear gate;
    readonly Experts experts;
    readonly SwiGluMlp? shared_expert;
    readonly Linear? shared_expert_gate;
    readonly QwenConfig _c;

    /// <summary>Creates the block.</summary>
    public QwenMoe(QwenConfig c, ScalarType dtype, Device device) : base("QwenMoe")
    {
        _c = c;
        gate = new Linear(c.HiddenSize, c.NumExperts, dtype, device);
        experts = new Experts(c.NumExperts, c.MoeIntermediateSize, c.HiddenSize, dtype, device);
        if (c.SharedExpertIntermediateSize > 0)
        {
            shared_expert = new SwiGluMlp(c.HiddenSize, c.SharedExpertIntermediateSize, dtype, device);
            shared_expert_gate = new Linear(c.HiddenSize, 1, dtype, device);
        }
        RegisterComponents();
    }

    /// <summary>Softmax over router logits [N, E] (F32), top-k; renormalised when <paramref name="normalize"/>.</summary>
    public static (Tensor Indices, Tensor Weights) Route(Tensor logits, int topK, bool normalize)
    {
        var probs = logits.to(ScalarType.Float32).softmax(-1);
        var (w, idx) = probs.topk(topK, dim: -1);
        if (normalize) w = w / w.sum(-1, keepdim: true);
        return (idx, w);
    }

    /// <inheritdoc />
    public override Tensor forward(Tensor x)
    {
        var shape = x.shape;
        var flat = x.reshape(-1, shape[^1]);
        var logits = nn.functional.linear(flat.to(ScalarType.Float32), gate.Weight.to(ScalarType.Float32));
        var (idx, w) = Route(logits, _c.NumExpertsPerTok, _c.NormTopkProb);
        var y = experts.forward(flat, idx, w);
        if (shared_expert is not null) y = y.Plus(shared_expert.forward(flat) * shared_expert_gate!.forward(flat).sigmoid());
        return y.view(shape);
    }
}

/// <summary>
/// One Qwen decoder block: zero-centred pre-norms, token mixer (<c>self_attn</c> full attention or
/// <c>linear_attn</c> Gated DeltaNet), MLP (MoE or dense), residuals.
/// </summary>
public sealed class QwenDecoderLayer : nn.Module<Tensor, QwenContext, Tensor>
{
    readonly ZeroCenteredRmsNorm input_layernorm;
    readonly QwenAttention? self_attn;
    readonly GatedDeltaNet? linear_attn;
    readonly ZeroCenteredRmsNorm post_attention_layernorm;
    readonly nn.Module<Tensor, Tensor> mlp;

    /// <summary>Creates a block of the given kind.</summary>
    public QwenDecoderLayer(QwenConfig c, bool fullAttention, bool moe, ScalarType dtype, Device device) : base("QwenDecoderLayer")
    {
        input_layernorm = new ZeroCenteredRmsNorm(c.HiddenSize, c.RmsNormEps, dtype, device);
        if (fullAttention) self_attn = new QwenAttention(c, dtype, device);
        else linear_attn = new GatedDeltaNet(c, dtype, device);
        post_attention_layernorm = new ZeroCenteredRmsNorm(c.HiddenSize, c.RmsNormEps, dtype, device);
        mlp = moe ? new QwenMoe(c, dtype, device) : new SwiGluMlp(c.HiddenSize, c.IntermediateSize, dtype, device);
        RegisterComponents();
    }

    /// <summary>Whether this block uses full attention.</summary>
    public bool IsFullAttention => self_attn is not null;

    /// <inheritdoc />
    public override Tensor forward(Tensor x, QwenContext ctx)
    {
        var n = input_layernorm.forward(x);
        var h = x.Plus(self_attn is not null ? self_attn.forward(n, ctx) : linear_attn!.forward(n, ctx));
        return h.Plus(mlp.forward(post_attention_layernorm.forward(h)));
    }
}
