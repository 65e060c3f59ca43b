using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Mtp.Model;

// Field names in these modules ARE the parameter names (TorchSharp registers fields by name), so they
// follow the checkpoint's snake_case and are exempt from C# naming conventions.
#pragma warning disable IDE1006

/// <summary>
/// GLM-4.5 attention (transformers' <c>Glm4MoeAttention</c>, training form): q/k/v projections (biased when
/// <c>attention_bias</c>), per-head RMSNorm of query and key when <c>use_qk_norm</c>, rotate-half RoPE on the first
/// rotary dims, grouped-query attention scaled by 1/sqrt(head_dim), <c>o_proj</c> without bias.
/// </summary>
internal sealed class Glm45Attention : nn.Module<Tensor, AttentionContext, Tensor>
{
    readonly Linear q_proj;
    readonly Linear k_proj;
    readonly Linear v_proj;
    readonly Linear o_proj;
    readonly RmsNorm? q_norm;
    readonly RmsNorm? k_norm;
    readonly int _heads, _kvHeads, _headDim;
    readonly double _scale;

    /// <summary>Creates the attention block of <paramref name="c"/> (which has <see cref="DeepSeekV3Config.Gqa"/>).</summary>
    public Glm45Attention(DeepSeekV3Config c, ScalarType dtype, Device device) : base("Glm45Attention")
    {
        var g = c.Gqa ?? throw new ArgumentException("GLM-4.5 attention needs a GQA config", nameof(c));
        (_heads, _kvHeads, _headDim) = (c.NumAttentionHeads, g.NumKeyValueHeads, g.HeadDim);
        long h = c.HiddenSize, q = (long)_heads * _headDim, kv = (long)_kvHeads * _headDim;
        q_proj = new Linear(h, q, dtype, device, withBias: g.Bias);
        k_proj = new Linear(h, kv, dtype, device, withBias: g.Bias);
        v_proj = new Linear(h, kv, dtype, device, withBias: g.Bias);
        o_proj = new Linear(q, h, dtype, device);
        if (g.QkNorm)
        {
            q_norm = new RmsNorm(_headDim, c.RmsNormEps, dtype, device);
            k_norm = new RmsNorm(_headDim, c.RmsNormEps, dtype, device);
        }
        _scale = 1.0 / Math.Sqrt(_headDim);
        RegisterComponents();
    }

    /// <inheritdoc />
    public override Tensor forward(Tensor x, AttentionContext ctx)
    {
        long b = x.shape[0], s = x.shape[1];
        var q = q_proj.forward(x).view(b, s, _heads, _headDim);
        var k = k_proj.forward(x).view(b, s, _kvHeads, _headDim);
        var v = v_proj.forward(x).view(b, s, _kvHeads, _headDim).transpose(1, 2);
        if (q_norm is not null) { q = q_norm.forward(q); k = k_norm!.forward(k); }
        q = Rope.ApplyPartial(q.transpose(1, 2), ctx.Cos, ctx.Sin);
        k = Rope.ApplyPartial(k.transpose(1, 2), ctx.Cos, ctx.Sin);
        return o_proj.forward(MaskedAttention.Forward(q, k, v, ctx.Mask, _scale, x.dtype));
    }
}
