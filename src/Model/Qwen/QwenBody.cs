using Mtp.SafeTensors;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Mtp.Model.Qwen;

#pragma warning disable IDE1006

/// <summary>Token embedding <c>weight</c> [V, H], also the output head when embeddings are tied.</summary>
public sealed class QwenEmbedding : nn.Module<Tensor, Tensor>
{
    readonly Parameter weight;

    /// <summary>Creates a zero-initialised embedding.</summary>
    public QwenEmbedding(long vocab, long hidden, ScalarType dtype, Device device) : base("QwenEmbedding")
    {
        weight = P.Make(new[] { vocab, hidden }, dtype, device);
        RegisterComponents();
    }

    /// <summary>The table [V, H].</summary>
    public Parameter Weight => weight;

    /// <inheritdoc />
    public override Tensor forward(Tensor ids) => weight.index_select(0, ids.flatten()).unflatten(0, ids.shape);
}

/// <summary>The main model under <c>model.</c>: <c>embed_tokens</c>, <c>layers</c>, <c>norm</c>.</summary>
public sealed class QwenBody : nn.Module
{
    readonly QwenEmbedding embed_tokens;
    readonly ModuleList<QwenDecoderLayer> layers;
    readonly ZeroCenteredRmsNorm norm;

    /// <summary>Creates the body.</summary>
    public QwenBody(QwenConfig c, ScalarType dtype, Device device) : base("QwenBody")
    {
        embed_tokens = new QwenEmbedding(c.VocabSize, c.HiddenSize, dtype, device);
        layers = new ModuleList<QwenDecoderLayer>(Enumerable.Range(0, c.NumHiddenLayers)
            .Select(i => new QwenDecoderLayer(c, c.FullAttention[i], c.IsMoeLayer(i), dtype, device)).ToArray());
        norm = new ZeroCenteredRmsNorm(c.HiddenSize, c.RmsNormEps, dtype, device);
        RegisterComponents();
    }

    /// <summary>The token embedding.</summary>
    public QwenEmbedding EmbedTokens => embed_tokens;
    /// <summary>The final norm.</summary>
    public ZeroCenteredRmsNorm Norm => norm;
    /// <summary>The decoder layers.</summary>
    public IReadOnlyList<QwenDecoderLayer> Layers => layers.ToList();

    /// <summary>Last hidden state [B, S, H] before the final norm.</summary>
    public Tensor Hidden(Tensor ids, QwenContext ctx)
    {
        var h = embed_tokens.forward(ids);
        foreach (var l in layers) h = l.forward(h, ctx);
        return h;
    }
}
