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
internal sealed class V4Attention : nn.Module
{
    readonly Linear q_a_proj;
    readonly RmsNorm q_a_norm;
    readonly Linear q_b_proj;
    readonly Linear kv_proj;
    readonly RmsNorm kv_norm;
    readonly Linear o_a_proj;
    readonly Linear o_b_proj;
    readonly Parameter sinks;
    readonly Compressor? compressor;
    readonly DeepSeekV4Config _c;
    readonly int _ratio;

    /// <summary>Creates the attention of a layer with compress ratio <paramref name="ratio"/>.</summary>
    public V4Attention(DeepSeekV4Config c, int ratio, ScalarType dtype, Device device) : base("V4Attention")
    {
        _c = c; _ratio = ratio;
        int h = c.HiddenSize, nh = c.NumAttentionHeads, hd = c.HeadDim;
        q_a_proj = new Linear(h, c.QLoraRank, dtype, device);
        q_a_norm = new RmsNorm(c.QLoraRank, c.RmsNormEps, dtype, device);
        q_b_proj = new Linear(c.QLoraRank, (long)nh * hd, dtype, device);
        kv_proj = new Linear(h, hd, dtype, device);
        kv_norm = new RmsNorm(hd, c.RmsNormEps, dtype, device);
        o_a_proj = new Linear((long)nh * hd / c.OGroups, (long)c.OGroups * c.OLoraRank, dtype, device);
        o_b_proj = new Linear((long)c.OGroups * c.OLoraRank, h, dtype, device);
        sinks = P.Make(new long[] { nh }, ScalarType.Float32, device);
        if (ratio > 0)
        {
            compressor = new Compressor(c, ratio, hd, ratio == 4 ? new Indexer(c, ratio, dtype, device) : null, dtype, device);
        }
        RegisterComponents();
    }

    /// <summary>The layer's compress ratio (0: sliding window only).</summary>
    public int Ratio => _ratio;
    /// <summary>The indexer (ratio 4 only).</summary>
    public Indexer? IndexerModule => compressor?.IndexerModule;
    /// <summary>The compressor (ratio &gt; 0 only).</summary>
    public Compressor? CompressorModule => compressor;

    /// <summary>x [B, S, H] (after input_layernorm) → [B, S, H].</summary>
    public Tensor Forward(Tensor x, V4Context ctx)
    {
        long b = x.shape[0], s = x.shape[1];
        int nh = _c.NumAttentionHeads, hd = _c.HeadDim, rd = _c.QkRopeHeadDim;
        var (cos, sin) = _ratio > 0 ? (ctx.CosCompress, ctx.SinCompress) : (ctx.CosBase, ctx.SinBase);
        var qr = q_a_norm.forward(q_a_proj.forward(x));
        var q = q_b_proj.forward(qr).view(b, s, nh, hd);
        var qf = q.to(ScalarType.Float32);
        q = (qf * qf.Squared().mean(new long[] { -1 }, keepdim: true).Plus(_c.RmsNormEps).rsqrt()).to(x.dtype);
        q = V4Rope.ApplyTail(q, cos.unsqueeze(2), sin.unsqueeze(2), rd).transpose(1, 2);   // [B, nh, S, hd]
        var kv = V4Rope.ApplyTail(kv_norm.forward(kv_proj.forward(x)), cos, sin, rd);           // [B, S, hd]
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
                var visible = compressor.IndexerModule is not { } indexer ? plan.Visible : indexer.Select(x, qr, cos, sin, plan, cosC!, sinC!);
                var cs = matmul(q, ckv.unsqueeze(1).transpose(-2, -1)).to(ScalarType.Float32).Times(scale);
                cs = cs.FillWhere(visible.logical_not(), double.NegativeInfinity);
                scores = cat(new[] { scores, cs }, -1);
                values = cat(new[] { kv, ckv.to(kv.dtype) }, 1);
            }
        }
        var probs = WithSink(scores, sinks).to(x.dtype);
        var o = matmul(probs, values.unsqueeze(1)).transpose(1, 2);                          // [B, S, nh, hd]
        o = V4Rope.ApplyTail(o, cos.unsqueeze(2), sin.unsqueeze(2), rd, inverse: true);
        int g = _c.OGroups;
        var og = o.reshape(b, s, g, (long)nh * hd / g);
        var wa = o_a_proj.Weight.view(g, _c.OLoraRank, (long)nh * hd / g);
        var low = einsum("bsgd,grd->bsgr", og, wa).flatten(2);
        return o_b_proj.forward(low);
    }

    /// <summary>softmax over [scores, sink_h] with the sink column dropped: exp(s_j) / (Σ exp(s) + exp(sink_h)). scores [B, nh, S, K] F32.</summary>
    public static Tensor WithSink(Tensor scores, Tensor sink)
    {
        var sk = sink.to(ScalarType.Float32).view(1, -1, 1, 1).expand(scores.shape[0], scores.shape[1], scores.shape[2], 1);
        var all = cat(new[] { scores, sk }, -1).softmax(-1);
        return all.narrow(-1, 0, scores.shape[^1]);
    }
}
