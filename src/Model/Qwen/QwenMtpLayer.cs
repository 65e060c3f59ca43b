using Mtp.SafeTensors;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Mtp.Model.Qwen;

#pragma warning disable IDE1006

/// <summary>
/// MTP layer <c>mtp.layers.{j}</c>: a full-attention decoder block (MoE or dense like the model) flattened under
/// the prefix; layer 0 also holds the fusion modules every depth shares: <c>eh_proj</c> (HF <c>mtp.fc</c>,
/// [H, 2H], embedding half first), <c>enorm</c> / <c>hnorm</c> (<c>pre_fc_norm_embedding</c> / <c>_hidden</c>)
/// and <c>final_layernorm</c> (<c>mtp.norm</c>).
/// </summary>
public sealed class QwenMtpLayer : nn.Module
{
    readonly Linear? eh_proj;
    readonly ZeroCenteredRmsNorm? enorm;
    readonly ZeroCenteredRmsNorm? hnorm;
    readonly ZeroCenteredRmsNorm? final_layernorm;
    readonly ZeroCenteredRmsNorm input_layernorm;
    readonly QwenAttention self_attn;
    readonly ZeroCenteredRmsNorm post_attention_layernorm;
    readonly nn.Module<Tensor, Tensor> mlp;

    /// <summary>Creates the layer; <paramref name="fusion"/> adds the shared fusion modules (layer 0).</summary>
    public QwenMtpLayer(QwenConfig c, bool fusion, ScalarType dtype, Device device) : base("QwenMtpLayer")
    {
        if (fusion)
        {
            eh_proj = new Linear(2L * c.HiddenSize, c.HiddenSize, dtype, device);
            enorm = new ZeroCenteredRmsNorm(c.HiddenSize, c.RmsNormEps, dtype, device);
            hnorm = new ZeroCenteredRmsNorm(c.HiddenSize, c.RmsNormEps, dtype, device);
            final_layernorm = new ZeroCenteredRmsNorm(c.HiddenSize, c.RmsNormEps, dtype, device);
        }
        input_layernorm = new ZeroCenteredRmsNorm(c.HiddenSize, c.RmsNormEps, dtype, device);
        self_attn = new QwenAttention(c, dtype, device);
        post_attention_layernorm = new ZeroCenteredRmsNorm(c.HiddenSize, c.RmsNormEps, dtype, device);
        mlp = c.NumExperts > 0 ? new QwenMoe(c, dtype, device) : new SwiGluMlp(c.HiddenSize, c.IntermediateSize, dtype, device);
        RegisterComponents();
    }

    /// <summary>The decoder block of this layer.</summary>
    public Tensor Block(Tensor x, QwenContext ctx)
    {
        var h = x.Plus(self_attn.forward(input_layernorm.forward(x), ctx));
        return h.Plus(mlp.forward(post_attention_layernorm.forward(h)));
    }

    /// <summary>eh_proj(cat(enorm(emb), hnorm(hPrev))) with this layer's fusion modules (layer 0 holds them).</summary>
    public Tensor Fuse(Tensor emb, Tensor hPrev) =>
        eh_proj!.forward(cat(new[] { enorm!.forward(emb), hnorm!.forward(hPrev) }, -1));

    /// <summary>The shared final_layernorm (layer 0 holds it).</summary>
    public Tensor FinalNorm(Tensor h) => final_layernorm!.forward(h);

    /// <summary>
    /// One depth: <c>final_layernorm(block(eh_proj(cat(enorm(emb), hnorm(hPrev)))))</c> with this layer's block and
    /// <paramref name="fusion"/>'s shared modules. The result is both the next depth's hPrev and the head's input.
    /// </summary>
    public Tensor Depth(Tensor emb, Tensor hPrev, QwenContext ctx, QwenMtpLayer fusion) =>
        fusion.FinalNorm(Block(fusion.Fuse(emb, hPrev), ctx));
}
