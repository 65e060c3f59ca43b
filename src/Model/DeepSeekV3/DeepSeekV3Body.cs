using Mtp.SafeTensors;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Mtp.Model;

#pragma warning disable IDE1006

/// <summary>The main model under <c>model.</c>: <c>embed_tokens</c>, <c>layers</c>, <c>norm</c>.</summary>
public sealed class DeepSeekV3Body : nn.Module
{
    readonly Embedding embed_tokens;
    readonly ModuleList<DecoderLayer> layers;
    readonly RmsNorm norm;

    /// <summary>Creates the body.</summary>
    public DeepSeekV3Body(DeepSeekV3Config c, ScalarType dtype, Device device) : base("DeepSeekV3Body")
    {
        embed_tokens = new Embedding(c.VocabSize, c.HiddenSize, dtype, device);
        layers = new ModuleList<DecoderLayer>(Enumerable.Range(0, c.NumHiddenLayers).Select(i => new DecoderLayer(c, c.IsMoeLayer(i), dtype, device)).ToArray());
        norm = new RmsNorm(c.HiddenSize, c.RmsNormEps, dtype, device);
        RegisterComponents();
    }

    /// <summary>The shared token embedding.</summary>
    public Embedding EmbedTokens => embed_tokens;
    /// <summary>The final norm.</summary>
    public RmsNorm Norm => norm;
    /// <summary>The decoder layers.</summary>
    public IReadOnlyList<DecoderLayer> Layers => layers.ToList();

    /// <summary>Last hidden state [B, S, H] BEFORE the final norm (the MTP depths read it after the norm, see <c>DeepSeekV3Model.MainForward</c>).</summary>
    public Tensor Hidden(Tensor ids, AttentionContext ctx)
    {
        var h = embed_tokens.forward(ids);
        foreach (var l in layers) h = l.forward(h, ctx);
        return h;
    }
}
