using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Mtp.Model;

// Field names in these modules ARE the parameter names (TorchSharp registers fields by name).
#pragma warning disable IDE1006

/// <summary>
/// KV compressor (<c>kv_proj</c>, <c>gate_proj</c>, <c>position_bias</c> [r, coff*d] F32, <c>kv_norm</c>; transformers'
/// names): each entry is a softmax-gated (per channel) pool of r tokens' projections plus <c>position_bias</c>; ratio 4
/// overlaps (coff 2: the first d channels pool the previous group, the second d the own group). RMSNorm, then rope of
/// the group's first position. At ratio 4 it holds the layer's <c>indexer</c>, as transformers nests it.
/// </summary>
internal sealed class Compressor : nn.Module
{
    readonly Linear kv_proj;
    readonly Linear gate_proj;
    readonly Parameter position_bias;
    readonly RmsNorm kv_norm;
    readonly Indexer? indexer;
    readonly CompressorPool _pool;

    /// <summary>Creates a compressor of ratio <paramref name="ratio"/> and head dim <paramref name="headDim"/>, with <paramref name="indexer"/> (ratio 4) or none.</summary>
    public Compressor(DeepSeekV4Config c, int ratio, int headDim, Indexer? indexer, ScalarType dtype, Device device) : base("Compressor")
    {
        (kv_proj, gate_proj, position_bias, kv_norm) = CompressorPool.Weights(c, ratio, headDim, dtype, device);
        _pool = new CompressorPool(c, ratio, headDim);
        this.indexer = indexer;
        RegisterComponents();
    }

    /// <summary>The indexer (ratio 4 only).</summary>
    public Indexer? IndexerModule => indexer;

    /// <summary>Compressed entries [B, C, d] of x [B, S, H] for <paramref name="plan"/> (padding entries are finite garbage, masked by the caller).</summary>
    public Tensor Forward(Tensor x, CompressPlan plan, Tensor cos, Tensor sin) => _pool.Run(kv_proj, gate_proj, position_bias, kv_norm, x, plan, cos, sin);
}

/// <summary>
/// The pooling a compressor does, over weights held by the module that owns them (<see cref="Compressor"/>, or the
/// <see cref="Indexer"/>, whose own compressor's weights sit flat in it as in transformers).
/// </summary>
internal sealed class CompressorPool(DeepSeekV4Config c, int ratio, int headDim)
{
    readonly int _r = ratio, _d = headDim, _rd = c.QkRopeHeadDim;
    readonly bool _overlap = ratio == 4;

    /// <summary>New (kv_proj, gate_proj, position_bias, kv_norm) for ratio <paramref name="ratio"/> and head dim <paramref name="headDim"/>.</summary>
    public static (Linear, Linear, Parameter, RmsNorm) Weights(DeepSeekV4Config c, int ratio, int headDim, ScalarType dtype, Device device)
    {
        int coff = ratio == 4 ? 2 : 1;
        return (new Linear(c.HiddenSize, coff * headDim, dtype, device), new Linear(c.HiddenSize, coff * headDim, dtype, device),
            P.Make(new long[] { ratio, coff * headDim }, ScalarType.Float32, device), new RmsNorm(headDim, c.RmsNormEps, dtype, device));
    }

    /// <summary>Compressed entries [B, C, d] of x [B, S, H].</summary>
    public Tensor Run(Linear wkv, Linear wgate, Parameter ape, RmsNorm norm, Tensor x, CompressPlan plan, Tensor cos, Tensor sin)
    {
        long b = x.shape[0], c = plan.Count;
        int d = _d, r = _r;
        var xf = x.to(ScalarType.Float32).flatten(0, 1);
        var kv = nn.functional.linear(xf, wkv.Weight.to(ScalarType.Float32));
        var score = nn.functional.linear(xf, wgate.Weight.to(ScalarType.Float32));
        Tensor Gather(Tensor t, Tensor idx) => t.index_select(0, idx.flatten()).view(b, c, r, t.shape[^1]);
        var apeF = ape.to(ScalarType.Float32);
        Tensor kvAll, scAll;
        if (_overlap)
        {
            var kCur = Gather(kv, plan.Current).narrow(-1, d, d);
            var sCur = Gather(score, plan.Current).narrow(-1, d, d).Plus(apeF.narrow(-1, d, d));
            var kPrev = Gather(kv, plan.Previous).narrow(-1, 0, d);
            var sPrev = Gather(score, plan.Previous).narrow(-1, 0, d).Plus(apeF.narrow(-1, 0, d))
                .FillWhere(plan.PreviousValid.logical_not().view(b, c, 1, 1), double.NegativeInfinity);
            kvAll = cat(new[] { kPrev, kCur }, 2);
            scAll = cat(new[] { sPrev, sCur }, 2);
        }
        else
        {
            kvAll = Gather(kv, plan.Current);
            scAll = Gather(score, plan.Current).Plus(apeF);
        }
        var pooled = (kvAll * scAll.softmax(2)).sum(2);                               // [B, C, d]
        var normed = norm.forward(pooled.to(x.dtype));
        return V4Rope.ApplyTail(normed, cos, sin, _rd);
    }
}
