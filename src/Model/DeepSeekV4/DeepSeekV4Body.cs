using Mtp.SafeTensors;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Mtp.Model;

#pragma warning disable IDE1006

/// <summary>The main model under <c>model.</c>: <c>embed_tokens</c>, <c>layers</c>, <c>norm</c>, <c>hc_head</c>.</summary>
public sealed class DeepSeekV4Body : nn.Module
{
    readonly Embedding embed_tokens;
    readonly ModuleList<V4Block> layers;
    readonly RmsNorm norm;
    readonly HcHead hc_head;

    /// <summary>Creates the body.</summary>
    public DeepSeekV4Body(DeepSeekV4Config c, ScalarType dtype, Device device) : base("DeepSeekV4Body")
    {
        embed_tokens = new Embedding(c.VocabSize, c.HiddenSize, dtype, device);
        layers = new ModuleList<V4Block>(Enumerable.Range(0, c.NumHiddenLayers).Select(i => new V4Block(c, i, dtype, device)).ToArray());
        norm = new RmsNorm(c.HiddenSize, c.RmsNormEps, dtype, device);
        hc_head = new HcHead(c, device);
        RegisterComponents();
    }

    /// <summary>The token embedding (shared with the MTP depths).</summary>
    public Embedding EmbedTokens => embed_tokens;
    /// <summary>The final norm.</summary>
    public RmsNorm Norm => norm;
    /// <summary>The final stream collapse.</summary>
    public HcHead HcHead => hc_head;
    /// <summary>The layers.</summary>
    public IReadOnlyList<V4Block> Layers => layers.ToList();

    /// <summary>Final hidden streams [B, S, hc, H] (before hc_head and norm).</summary>
    public Tensor Streams(Tensor ids, V4Context ctx, int hcMult)
    {
        var h = embed_tokens.forward(ids).unsqueeze(2).repeat(1, 1, hcMult, 1);
        foreach (var l in layers) h = l.Forward(h, ids, ctx);
        return h;
    }
}
