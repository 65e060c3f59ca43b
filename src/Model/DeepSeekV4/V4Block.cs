using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Mtp.Model;

// Field names in these modules ARE the parameter names (TorchSharp registers fields by name).
#pragma warning disable IDE1006

/// <summary>The pieces of one V4 block (a main layer or an MTP depth's block, whose names sit flat under the depth).</summary>
internal sealed record V4BlockParts(RmsNorm InputNorm, V4Attention Attn, RmsNorm PostAttentionNorm, V4Moe Mlp, HcMix AttnHc, HcMix FfnHc)
{
    /// <summary>
    /// attn_hc pre → input_layernorm → self_attn → attn_hc post; ffn_hc pre → post_attention_layernorm → MoE → ffn_hc post.
    /// x [B, S, hc, H].
    /// </summary>
    public Tensor Run(DeepSeekV4Config c, Tensor x, Tensor ids, V4Context ctx)
    {
        var (pre, post, comb) = AttnHc.Split(c, x);
        var a = Attn.Forward(InputNorm.forward(HyperConnection.Collapse(x, pre)), ctx);
        x = HyperConnection.Expand(a, x, post, comb);
        (pre, post, comb) = FfnHc.Split(c, x);
        var f = Mlp.Forward(PostAttentionNorm.forward(HyperConnection.Collapse(x, pre)), ids);
        return HyperConnection.Expand(f, x, post, comb);
    }
}

/// <summary>
/// A block's hyper-connection mixing parameters (<c>attn_hc</c> / <c>ffn_hc</c>: <c>fn</c> [(2+hc)·hc, hc·H],
/// <c>base</c> [(2+hc)·hc], <c>scale</c> [3], all F32), as transformers' <c>DeepseekV4HyperConnection</c>.
/// </summary>
internal sealed class HcMix : nn.Module
{
    readonly Parameter fn;
    readonly Parameter @base;
    readonly Parameter scale;

    /// <summary>Creates the three parameters for <paramref name="c"/>'s hc_mult and hidden size.</summary>
    public HcMix(DeepSeekV4Config c, Device device) : base("HcMix")
    {
        long mix = (2L + c.HcMult) * c.HcMult;
        fn = P.Make(new long[] { mix, (long)c.HcMult * c.HiddenSize }, ScalarType.Float32, device);
        @base = P.Make(new long[] { mix }, ScalarType.Float32, device);
        scale = P.Make(new long[] { 3 }, ScalarType.Float32, device);
        RegisterComponents();
    }

    /// <summary>The (pre, post, comb) weights of streams x [B, S, hc, H].</summary>
    public (Tensor Pre, Tensor Post, Tensor Comb) Split(DeepSeekV4Config c, Tensor x) =>
        HyperConnection.Split(HyperConnection.Mixes(x, fn, c.RmsNormEps), scale, @base, c.HcMult, c.HcSinkhornIters, c.HcEps);
}

/// <summary>One main V4 layer <c>model.layers.{i}</c>.</summary>
internal sealed class V4Block : nn.Module
{
    readonly RmsNorm input_layernorm;
    readonly V4Attention self_attn;
    readonly RmsNorm post_attention_layernorm;
    readonly V4Moe mlp;
    readonly HcMix attn_hc;
    readonly HcMix ffn_hc;
    readonly DeepSeekV4Config _c;

    /// <summary>Creates layer <paramref name="layer"/>.</summary>
    public V4Block(DeepSeekV4Config c, int layer, ScalarType dtype, Device device) : base("V4Block")
    {
        _c = c;
        input_layernorm = new RmsNorm(c.HiddenSize, c.RmsNormEps, dtype, device);
        self_attn = new V4Attention(c, c.CompressRatio(layer), dtype, device);
        post_attention_layernorm = new RmsNorm(c.HiddenSize, c.RmsNormEps, dtype, device);
        mlp = new V4Moe(c, c.IsHashLayer(layer), dtype, device);
        attn_hc = new HcMix(c, device);
        ffn_hc = new HcMix(c, device);
        RegisterComponents();
    }

    /// <summary>The attention.</summary>
    public V4Attention Attention => self_attn;
    /// <summary>The MoE.</summary>
    public V4Moe Mlp => mlp;

    /// <summary>x [B, S, hc, H], ids [B, S] → [B, S, hc, H].</summary>
    public Tensor Forward(Tensor x, Tensor ids, V4Context ctx) =>
        new V4BlockParts(input_layernorm, self_attn, post_attention_layernorm, mlp, attn_hc, ffn_hc).Run(_c, x, ids, ctx);
}
