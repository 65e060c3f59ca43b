using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Mtp.Model.Qwen;

// Field names in these modules ARE the parameter names (TorchSharp registers fields by name), so they
// follow the checkpoint's snake_case.
#pragma warning disable IDE1006

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
