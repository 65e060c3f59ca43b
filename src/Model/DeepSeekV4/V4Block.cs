using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Mtp.Model;

// Field names in these modules ARE the parameter names (TorchSharp registers fields by name).
#pragma warning disable IDE1006

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
