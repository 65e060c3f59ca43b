using Mtp.SafeTensors;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Mtp.Model;

#pragma warning disable IDE1006

/// <summary>Optional per-depth head copy: <c>shared_head.head.weight</c>.</summary>
internal sealed class SharedHead : nn.Module
{
    readonly Linear head;

    /// <summary>Creates the head.</summary>
    public SharedHead(DeepSeekV3Config c, ScalarType dtype, Device device) : base("SharedHead")
    {
        head = new Linear(c.HiddenSize, c.VocabSize, dtype, device);
        RegisterComponents();
    }

    /// <summary>The head.</summary>
    public Linear Head => head;
}

/// <summary>
/// One MTP depth (<c>mtp.layers.{k}</c>): enorm, hnorm, eh_proj [H, 2H] (embedding half first),
/// a full MoE decoder block flattened under the same prefix, final_layernorm. Embedding and head are the
/// main model's unless this depth carries its own copies (embed_tokens / shared_head.head).
/// </summary>
internal sealed class MtpDepth : nn.Module
{
    readonly RmsNorm enorm;
    readonly RmsNorm hnorm;
    readonly Linear eh_proj;
    readonly RmsNorm input_layernorm;
    readonly nn.Module<Tensor, AttentionContext, Tensor> self_attn;
    readonly RmsNorm post_attention_layernorm;
    readonly MoeBlock mlp;
    readonly RmsNorm final_layernorm;
    readonly Embedding? embed_tokens;
    readonly SharedHead? shared_head;

    /// <summary>Creates a depth; the flags add per-depth embedding / head copies.</summary>
    public MtpDepth(DeepSeekV3Config c, bool ownEmbedding, bool ownHead, ScalarType dtype, Device device) : base("MtpDepth")
    {
        enorm = new RmsNorm(c.HiddenSize, c.RmsNormEps, dtype, device);
        hnorm = new RmsNorm(c.HiddenSize, c.RmsNormEps, dtype, device);
        eh_proj = new Linear(2L * c.HiddenSize, c.HiddenSize, dtype, device);
        input_layernorm = new RmsNorm(c.HiddenSize, c.RmsNormEps, dtype, device);
        self_attn = DecoderLayer.AttentionOf(c, dtype, device);
        post_attention_layernorm = new RmsNorm(c.HiddenSize, c.RmsNormEps, dtype, device);
        mlp = new MoeBlock(c, dtype, device);
        final_layernorm = new RmsNorm(c.HiddenSize, c.RmsNormEps, dtype, device);
        if (ownEmbedding) embed_tokens = new Embedding(c.VocabSize, c.HiddenSize, dtype, device);
        if (ownHead) shared_head = new SharedHead(c, dtype, device);
        RegisterComponents();
    }

    /// <summary>
    /// h_k = Block(eh_proj(cat(enorm(emb), hnorm(h_prev)))), logits_k = head(final_layernorm(h_k)); returns (h_k, logits_k).
    /// h_prev is the normed main hidden state for the first depth, the previous depth's h_k after that.
    /// </summary>
    public (Tensor Hidden, Tensor Logits) Forward(Tensor rolledIds, Tensor hPrev, AttentionContext ctx, Embedding sharedEmbedding, Linear sharedHead) =>
        MtpDepthStep.Run(Bind(sharedEmbedding, sharedHead), rolledIds, hPrev, ctx);

    /// <summary>This depth's parts, with the main model's embedding and head where it has no copies of its own.</summary>
    internal IMtpDepth<AttentionContext> Bind(Embedding sharedEmbedding, Linear sharedHead) => new Parts(this, sharedEmbedding, sharedHead);

    // The next depth reads the block output, before final_layernorm.
    sealed class Parts(MtpDepth d, Embedding sharedEmbedding, Linear sharedHead) : IMtpDepth<AttentionContext>
    {
        public bool CarriesNormed => false;
        public Tensor Embed(Tensor rolledIds) => (d.embed_tokens ?? sharedEmbedding).forward(rolledIds);
        public Tensor Fuse(Tensor embedded, Tensor previous) => d.eh_proj.forward(cat(new[] { d.enorm.forward(embedded), d.hnorm.forward(previous) }, -1));
        public Tensor Block(Tensor fused, Tensor rolledIds, AttentionContext ctx) =>
            DecoderLayer.Block(d.input_layernorm, d.self_attn, d.post_attention_layernorm, d.mlp, fused, ctx);
        public Tensor FinalNorm(Tensor blockOutput) => d.final_layernorm.forward(blockOutput);
        public Tensor Head(Tensor normed) => (d.shared_head?.Head ?? sharedHead).forward(normed);
    }
}
