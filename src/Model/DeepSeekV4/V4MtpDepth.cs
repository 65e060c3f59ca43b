using Mtp.SafeTensors;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Mtp.Model;

#pragma warning disable IDE1006

/// <summary>
/// One V4 MTP depth <c>mtp.layers.{k}</c>: <c>e_proj</c> and <c>h_proj</c> (or the legacy fused <c>eh_proj</c> [H, 2H],
/// embedding half first), <c>enorm</c>, <c>hnorm</c>, the block's keys flat under the same prefix, its own
/// <c>hc_head</c> (<c>hc_fn</c>, <c>hc_base</c>, <c>hc_scale</c>, as the main one; legacy checkpoints have none: the main model's is used) and <c>final_layernorm</c>; optional
/// <c>embed_tokens</c> / <c>shared_head.head</c> copies.
/// </summary>
internal sealed class V4MtpDepth : nn.Module
{
    readonly Linear? e_proj;
    readonly Linear? h_proj;
    readonly Linear? eh_proj;
    readonly RmsNorm enorm;
    readonly RmsNorm hnorm;
    readonly RmsNorm input_layernorm;
    readonly V4Attention self_attn;
    readonly RmsNorm post_attention_layernorm;
    readonly V4Moe mlp;
    readonly HcMix attn_hc;
    readonly HcMix ffn_hc;
    readonly HcHead? hc_head;
    readonly RmsNorm final_layernorm;
    readonly Embedding? embed_tokens;
    readonly SharedHead4? shared_head;
    readonly DeepSeekV4Config _c;

    /// <summary>Creates depth <paramref name="k"/> (0-based).</summary>
    public V4MtpDepth(DeepSeekV4Config c, int k, V4DepthLayout layout, ScalarType dtype, Device device) : base("V4MtpDepth")
    {
        _c = c;
        int layer = c.NumHiddenLayers + k, h = c.HiddenSize;
        if (layout.FusedEhProj) eh_proj = new Linear(2L * h, h, dtype, device);
        else { e_proj = new Linear(h, h, dtype, device); h_proj = new Linear(h, h, dtype, device); }
        enorm = new RmsNorm(h, c.RmsNormEps, dtype, device);
        hnorm = new RmsNorm(h, c.RmsNormEps, dtype, device);
        input_layernorm = new RmsNorm(h, c.RmsNormEps, dtype, device);
        self_attn = new V4Attention(c, c.CompressRatio(layer), dtype, device);
        post_attention_layernorm = new RmsNorm(h, c.RmsNormEps, dtype, device);
        mlp = new V4Moe(c, c.IsHashLayer(layer), dtype, device);
        attn_hc = new HcMix(c, device);
        ffn_hc = new HcMix(c, device);
        if (layout.OwnHcHead) hc_head = new HcHead(c, device);
        final_layernorm = new RmsNorm(h, c.RmsNormEps, dtype, device);
        if (layout.OwnEmbedding) embed_tokens = new Embedding(c.VocabSize, h, dtype, device);
        if (layout.OwnHead) shared_head = new SharedHead4(c, dtype, device);
        RegisterComponents();
    }

    /// <summary>
    /// h_k = Block(e_proj(enorm(emb(ids_k))) broadcast over the streams + h_proj(hnorm(h_{k-1}))), logits =
    /// head(final_layernorm(hc_head(h_k))). Returns (h_k streams, logits).
    /// </summary>
    public (Tensor Streams, Tensor Logits) Forward(Tensor rolledIds, Tensor hPrev, V4Context ctx, Embedding sharedEmbedding, Linear sharedHead, HcHead sharedHcHead) =>
        MtpDepthStep.Run(Bind(sharedEmbedding, sharedHead, sharedHcHead), rolledIds, hPrev, ctx);

    /// <summary>This depth's parts, with the main model's embedding, head and hc_head where it has no copies of its own.</summary>
    internal IMtpDepth<V4Context> Bind(Embedding sharedEmbedding, Linear sharedHead, HcHead sharedHcHead) =>
        new Parts(this, sharedEmbedding, sharedHead, sharedHcHead);

    // The state passed on is the block's hyper-connection streams [B, S, hc, H]; only the head's input is collapsed.
    sealed class Parts(V4MtpDepth d, Embedding sharedEmbedding, Linear sharedHead, HcHead sharedHcHead) : IMtpDepth<V4Context>
    {
        public bool CarriesNormed => false;
        public Tensor Embed(Tensor rolledIds) => (d.embed_tokens ?? sharedEmbedding).forward(rolledIds);

        public Tensor Fuse(Tensor embedded, Tensor previous)
        {
            int h = d._c.HiddenSize;
            var e = d.enorm.forward(embedded);                                                    // [B, S, H]
            var hn = d.hnorm.forward(previous);                                                   // [B, S, hc, H]
            return d.eh_proj is not null
                ? nn.functional.linear(e, d.eh_proj.Weight.narrow(1, 0, h)).unsqueeze(2).Plus(nn.functional.linear(hn, d.eh_proj.Weight.narrow(1, h, h)))
                : d.e_proj!.forward(e).unsqueeze(2).Plus(d.h_proj!.forward(hn));
        }

        public Tensor Block(Tensor fused, Tensor rolledIds, V4Context ctx) =>
            new V4BlockParts(d.input_layernorm, d.self_attn, d.post_attention_layernorm, d.mlp, d.attn_hc, d.ffn_hc)
                .Run(d._c, fused, rolledIds, ctx);

        public Tensor FinalNorm(Tensor blockOutput) => d.final_layernorm.forward((d.hc_head ?? sharedHcHead).forward(blockOutput));
        public Tensor Head(Tensor normed) => (d.shared_head?.Head ?? sharedHead).forward(normed);
    }
}

/// <summary>Optional per-depth head copy: <c>shared_head.head.weight</c>.</summary>
internal sealed class SharedHead4 : nn.Module
{
    readonly Linear head;

    /// <summary>Creates the head.</summary>
    public SharedHead4(DeepSeekV4Config c, ScalarType dtype, Device device) : base("SharedHead4")
    {
        head = new Linear(c.HiddenSize, c.VocabSize, dtype, device);
        RegisterComponents();
    }

    /// <summary>The head.</summary>
    public Linear Head => head;
}

/// <summary>Which optional tensors one MTP depth carries.</summary>
/// <param name="FusedEhProj">Legacy spelling: one eh_proj [H, 2H] instead of e_proj / h_proj.</param>
/// <param name="OwnHcHead">The depth has its own hc_head.hc_{fn,base,scale} (V4-Flash: yes; legacy: no).</param>
/// <param name="OwnEmbedding">embed_tokens copy.</param>
/// <param name="OwnHead">shared_head.head copy.</param>
internal sealed record V4DepthLayout(bool FusedEhProj = false, bool OwnHcHead = true, bool OwnEmbedding = false, bool OwnHead = false);
