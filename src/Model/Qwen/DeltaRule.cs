using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Mtp.Model.Qwen;

// Field names in these modules ARE the parameter names (TorchSharp registers fields by name), so they
// follow the checkpoint's snake_case.
#pragma warning disable IDE1006

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
