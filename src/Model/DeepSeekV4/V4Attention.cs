using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Mtp.Model;

// Field names in these modules ARE the parameter names (TorchSharp registers fields by name).
#pragma warning disable IDE1006

/// <summary>
/// DeepSeek-V4 attention (training form, dense masks): low-rank q with per-head RMS scaling, one shared
/// KV head (key = value) with partial rope, sliding window plus (ratio &gt; 0) compressed entries
/// (selected by the indexer at ratio 4), a per-head sink in the softmax denominator, inverse rope on
/// the output, grouped low-rank output.
/// </summary>
public sealed class V4Attention : nn.Module
{
    readonly Linear wq_a;
    readonly RmsNorm q_norm;
    readonly Linear wq_b;
    readonly Linear wkv;
    readonly RmsNorm kv_norm;
    readonly Linear wo_a;
    readonly Linear wo_b;
    readonly Parameter attn_sink;
    readonly Compressor? compressor;
    readonly Indexer? indexer;
    readonly DeepSeekV4Config _c;
    readonly int _ratio;

    /// <summary>Creates the attention of a layer with compress ratio <paramref name="ratio"/>.</summary>
    public V4Attention(DeepSeekV4Config c, int ratio, ScalarType dtype, Device device) : base("V4Attention")
    {
        _c = c; _ratio = ratio;
        int h = c.HiddenSize, nh = c.NumAttentionHeads, hd = c.HeadDim;
        wq_a = new Linear(h, c.QLoraRank, dtype, device);
        q_norm = new RmsNorm(c.QLoraRank, c.RmsNormEps, dtype, device);
        wq_b = new Linear(c.QLoraRank, (long)nh * hd, dtype, device);
        wkv = new Linear(h, hd, dtype, device);
        kv_norm = new RmsNorm(hd, c.RmsNormEps, dtype, device);
        wo_a = new Linear((long)nh * hd / c.OGroups, (long)c.OGroups * c.OLoraRank, dtype, device);
        wo_b = new Linear((long)c.OGroups * c.OLoraRank, h, dtype, device);
        attn_sink = P.Make(new long[] { nh }, ScalarType.Float32, device);
        if (ratio > 0)
        {
            compressor = new Compressor(c, ratio, hd, dtype, device);
            if (ratio == 4) indexer = new Indexer(c, ratio, dtype, device);
        }
        RegisterComponents();
    }

    /// <summary>The layer's compress ratio (0: sliding window only).</summary>
    public int Ratio => _ratio;
    /// <summary>The indexer (ratio 4 only).</summary>
    public Indexer? IndexerModule => indexer;
    /// <summary>The compressor (ratio &gt; 0 only).</summary>
    public Compressor? CompressorModule => compressor;

    /// <summary>x [B, S, H] (after attn_norm) → [B, S, H].</summary>
    public Tensor Forward(Tensor x, V4Context ctx)
    {
        long b = x.shape[0], s = x.shape[1];
        int nh = _c.NumAttentionHeads, hd = _c.HeadDim, rd = _c.QkRopeHeadDim;
        var (cos, sin) = _ratio > 0 ? (ctx.CosCompress, ctx.SinCompress) : (ctx.CosBase, ctx.SinBase);
        var qr = q_norm.forward(wq_a.forward(x));
        var q = wq_b.forward(qr).view(b, s, nh, hd);
        var qf = q.to(ScalarType.Float32);
        q = (qf * qf.Squared().mean(new long[] { -1 }, keepdim: true).Plus(_c.RmsNormEps).rsqrt()).to(x.dtype);
        q = V4Rope.ApplyTail(q, cos.unsqueeze(2), sin.unsqueeze(2), rd).transpose(1, 2);   // [B, nh, S, hd]
        var kv = V4Rope.ApplyTail(kv_norm.forward(wkv.forward(x)), cos, sin, rd);           // [B, S, hd]
        double scale = 1.0 / Math.Sqrt(hd);
        var scores = matmul(q, kv.unsqueeze(1).transpose(-2, -1)).to(ScalarType.Float32).Times(scale);
        scores = scores.FillWhere(ctx.WindowMask.logical_not(), double.NegativeInfinity);
        var values = kv;
        if (_ratio > 0)
        {
            var (plan, cosC, sinC) = ctx.Plan(_ratio);
            if (plan is not null)
            {
                var ckv = compressor!.Forward(x, plan, cosC!, sinC!);                        // [B, C, hd]
                var visible = indexer is null ? plan.Visible : indexer.Select(x, qr, cos, sin, plan, cosC!, sinC!);
                var cs = matmul(q, ckv.unsqueeze(1).transpose(-2, -1)).to(ScalarType.Float32).Times(scale);
                cs = cs.FillWhere(visible.logical_not(), double.NegativeInfinity);
                scores = cat(new[] { scores, cs }, -1);
                values = cat(new[] { kv, ckv.to(kv.dtype) }, 1);
            }
        }
        var probs = WithSink(scores, attn_sink).to(x.dtype);
        var o = matmul(probs, values.unsqueeze(1)).transpose(1, 2);                          // [B, S, nh, hd]
        o = V4Rope.ApplyTail(o, cos.unsqueeze(2), sin.unsqueeze(2), rd, inverse: true);
        int g = _c.OGroups;
        var og = o.reshape(b, s, g, (long)nh * hd / g);
        var wa = wo_a.Weight.view(g, _c.OLoraRank, (long)nh * hd / g);
        var low = einsum("bsgd,grd->bsgr", og, wa).flatten(2);
        return wo_b.forward(low);
    }

    /// <summary>softmax over [scores, sink_h] with the sink column dropped: exp(s_j) / (Σ exp(s) + exp(sink_h)). scores [B, nh, S, K] F32.</summary>
    public static Tensor WithSink(Tensor scores, Tensor sink)
    {
        var sk = sink.to(ScalarType.Float32).view(1, -1, 1, 1).expand(scores.shape[0], scores.shape[1], scores.shape[2], 1);
        var all = cat(new[] { scores, sk }, -1).softmax(-1);
        return all.narrow(-1, 0, scores.shape[^1]);
    }
}
