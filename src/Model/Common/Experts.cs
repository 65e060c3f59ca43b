using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Mtp.Model;

// Field names in these modules ARE the parameter names (TorchSharp registers fields by name), so they
// follow the checkpoint's snake_case and are exempt from C# naming conventions.
#pragma warning disable IDE1006

/// <summary>
/// Stacked routed experts of every family: <c>gate_up_proj</c> [E, 2I, H] (gate rows first) and
/// <c>down_proj</c> [E, H, I], expert e computing down(act(gate x, up x)).
/// </summary>
public sealed class Experts : nn.Module<Tensor, Tensor, Tensor, Tensor>
{
    readonly Parameter gate_up_proj;
    readonly Parameter down_proj;
    readonly int _e, _inter;
    readonly Func<Tensor, Tensor, Tensor> _act;

    /// <summary>Creates the expert stack; <paramref name="activation"/>(gate, up) defaults to silu(gate) * up (SwiGLU).</summary>
    public Experts(int experts, int inter, int hidden, ScalarType dtype, Device device, Func<Tensor, Tensor, Tensor>? activation = null) : base("Experts")
    {
        _e = experts;
        _inter = inter;
        _act = activation ?? ((g, u) => nn.functional.silu(g) * u);
        gate_up_proj = P.Make(new long[] { _e, 2L * _inter, hidden }, dtype, device);
        down_proj = P.Make(new long[] { _e, hidden, _inter }, dtype, device);
        RegisterComponents();
    }

    /// <summary>DeepSeek-V3's experts (SwiGLU).</summary>
    public Experts(DeepSeekV3Config c, ScalarType dtype, Device device) : this(c.NRoutedExperts, c.MoeIntermediateSize, c.HiddenSize, dtype, device) { }

    /// <summary>x [N, H], chosen indices [N, k], weights [N, k] → weighted sum of expert outputs [N, H].</summary>
    public override Tensor forward(Tensor x, Tensor indices, Tensor weights)
    {
        var output = zeros_like(x);
        // Which (token, slot) pairs go to which expert: one host sync, then a loop over used experts.
        var flatIdx = indices.flatten().cpu().data<long>().ToArray();
        int k = (int)indices.shape[1];
        var lists = new List<long>[_e];
        for (int p = 0; p < flatIdx.Length; p++) (lists[flatIdx[p]] ??= new List<long>()).Add(p);
        var flatW = weights.flatten();
        for (int ex = 0; ex < _e; ex++)
        {
            if (lists[ex] is not { } pos) continue;
            using var posT = tensor(pos.ToArray(), device: x.device);
            var tok = posT.FloorDividedBy(k);
            var xe = x.index_select(0, tok);
            var gu = nn.functional.linear(xe, gate_up_proj[ex]);
            var h = _act(gu.narrow(-1, 0, _inter), gu.narrow(-1, _inter, _inter));
            var y = nn.functional.linear(h, down_proj[ex]);
            var w = flatW.index_select(0, posT).unsqueeze(-1).to(y.dtype);
            output = output.IndexAdd(0, tok, y * w);
        }
        return output;
    }
}
