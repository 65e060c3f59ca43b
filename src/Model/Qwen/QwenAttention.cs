using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Mtp.Model.Qwen;

// Field names in these modules ARE the parameter names (TorchSharp registers fields by name), so they
// follow the checkpoint's snake_case.
#pragma warning disable IDE1006

/// <summary>
/// Gated full attention: q_proj gives query and output gate interleaved per head ([heads, 2*head_dim], split),
/// zero-centred per-head q_norm / k_norm, partial RoPE, grouped-query attention, o_proj(attn * sigmoid(gate)).
/// </summary>
internal sealed class QwenAttention : nn.Module<Tensor, QwenContext, Tensor>
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
        q = Rope.ApplyPartial(q, ctx.Cos, ctx.Sin);
        k = Rope.ApplyPartial(k, ctx.Cos, ctx.Sin);
        var o = MaskedAttention.Forward(q, k, v, ctx.Mask, 1.0 / Math.Sqrt(hd), x.dtype);
        if (_c.AttnOutputGate) o = o * gate.sigmoid();
        return o_proj.forward(o);
    }
}
