using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Mtp.Model;

// Field names in these modules ARE the parameter names (TorchSharp registers fields by name), so they
// follow the checkpoint's snake_case and are exempt from C# naming conventions.
#pragma warning disable IDE1006

/// <summary>One decoder block: pre-norm attention (MLA, or GLM-4.5's GQA) and pre-norm MLP (dense or MoE), residuals.</summary>
internal sealed class DecoderLayer : nn.Module<Tensor, AttentionContext, Tensor>
{
    readonly RmsNorm input_layernorm;
    readonly nn.Module<Tensor, AttentionContext, Tensor> self_attn;
    readonly RmsNorm post_attention_layernorm;
    readonly nn.Module<Tensor, Tensor> mlp;

    /// <summary>Creates a block; <paramref name="moe"/> picks the MLP kind.</summary>
    public DecoderLayer(DeepSeekV3Config c, bool moe, ScalarType dtype, Device device) : base("DecoderLayer")
    {
        input_layernorm = new RmsNorm(c.HiddenSize, c.RmsNormEps, dtype, device);
        self_attn = AttentionOf(c, dtype, device);
        post_attention_layernorm = new RmsNorm(c.HiddenSize, c.RmsNormEps, dtype, device);
        mlp = moe ? new MoeBlock(c, dtype, device) : new SwiGluMlp(c.HiddenSize, c.IntermediateSize, dtype, device);
        RegisterComponents();
    }

    /// <inheritdoc />
    public override Tensor forward(Tensor x, AttentionContext ctx) => Block(input_layernorm, self_attn, post_attention_layernorm, mlp, x, ctx);

    /// <summary>The family's attention: MLA (DeepSeek-V3), or grouped-query (GLM-4.5) when the config has <see cref="DeepSeekV3Config.Gqa"/>.</summary>
    internal static nn.Module<Tensor, AttentionContext, Tensor> AttentionOf(DeepSeekV3Config c, ScalarType dtype, Device device) =>
        c.Gqa is null ? new MlaAttention(c, dtype, device) : new Glm45Attention(c, dtype, device);

    internal static Tensor Block(RmsNorm n1, nn.Module<Tensor, AttentionContext, Tensor> attn, RmsNorm n2, nn.Module<Tensor, Tensor> mlp, Tensor x, AttentionContext ctx)
    {
        var h = x.Plus(attn.forward(n1.forward(x), ctx));
        return h.Plus(mlp.forward(n2.forward(h)));
    }
}
