using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Mtp.Model;

// Field names in these modules ARE the parameter names (TorchSharp registers fields by name).
#pragma warning disable IDE1006

/// <summary>
/// KV compressor (<c>wkv</c>, <c>wgate</c>, <c>ape</c> [r, coff*d] F32, <c>norm</c>): each entry is a softmax-gated
/// (per channel) pool of r tokens' projections plus <c>ape</c>; ratio 4 overlaps (coff 2: the first d channels
/// pool the previous group, the second d the own group). RMSNorm, then rope of the group's first position.
/// </summary>
public sealed class Compressor : nn.Module
{
    readonly Linear wkv;
    readonly Linear wgate;
    readonly Parameter ape;
    readonly RmsNorm norm;
    readonly int _r, _d, _rd;
    readonly bool _overlap;

    /// <summary>Creates a compressor of ratio <paramref name="ratio"/> and head dim <paramref name="headDim"/>.</summary>
    public Compressor(DeepSeekV4Config c, int ratio, int headDim, ScalarType dtype, Device device) : base("Compressor")
    {
        _r = ratio; _d = headDim; _rd = c.QkRopeHeadDim; _overlap = ratio == 4;
        int coff = _overlap ? 2 : 1;
        wkv = new Linear(c.HiddenSize, coff * headDim, dtype, device);
        wgate = new Linear(c.HiddenSize, coff * headDim, dtype, device);
        ape = P.Make(new long[] { ratio, coff * headDim }, ScalarType.Float32, device);
        norm = new RmsNorm(headDim, c.RmsNormEps, dtype, device);
        RegisterComponents();
    }

    /// <summary>Compressed entries [B, C, d] of x [B, S, H] for <paramref name="plan"/> (padding entries are finite garbage, masked by the caller).</summary>
    public Tensor Forward(Tensor x, CompressPlan plan, Tensor cos, Tensor sin)
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
