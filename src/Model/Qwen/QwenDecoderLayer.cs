using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Mtp.Model.Qwen;

// Field names in these modules ARE the parameter names (TorchSharp registers fields by name), so they
// follow the checkpoint's snake_case.
#pragma warning disable IDE1006

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
