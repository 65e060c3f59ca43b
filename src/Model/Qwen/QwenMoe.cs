using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Mtp.Model.Qwen;

// Field names in these modules ARE the parameter names (TorchSharp registers fields by name), so they
// follow the checkpoint's snake_case.
#pragma warning disable IDE1006

/// <summary>
/// Qwen MoE block: softmax router <c>gate</c>, top-k (renormalised when configured), stacked <c>experts</c>,
/// <c>shared_expert</c> scaled by sigmoid(<c>shared_expert_gate</c>(x)).
/// </summary>
public sealed class QwenMoe : nn.Module<Tensor, Tensor>
{
    readonly Linear gate;
    readonly Experts experts;
    readonly SwiGluMlp? shared_expert;
    readonly Linear? shared_expert_gate;
    readonly QwenConfig _c;

    /// <summary>Creates the block.</summary>
    public QwenMoe(QwenConfig c, ScalarType dtype, Device device) : base("QwenMoe")
    {
        _c = c;
        gate = new Linear(c.HiddenSize, c.NumExperts, dtype, device);
        experts = new Experts(c.NumExperts, c.MoeIntermediateSize, c.HiddenSize, dtype, device);
        if (c.SharedExpertIntermediateSize > 0)
        {
            shared_expert = new SwiGluMlp(c.HiddenSize, c.SharedExpertIntermediateSize, dtype, device);
            shared_expert_gate = new Linear(c.HiddenSize, 1, dtype, device);
        }
        RegisterComponents();
    }

    /// <summary>Softmax over router logits [N, E] (F32), top-k; renormalised when <paramref name="normalize"/>.</summary>
    public static (Tensor Indices, Tensor Weights) Route(Tensor logits, int topK, bool normalize)
    {
        var probs = logits.to(ScalarType.Float32).softmax(-1);
        var (w, idx) = probs.topk(topK, dim: -1);
        if (normalize) w = w / w.sum(-1, keepdim: true);
        return (idx, w);
    }

    /// <inheritdoc />
    public override Tensor forward(Tensor x)
    {
        var shape = x.shape;
        var flat = x.reshape(-1, shape[^1]);
        var logits = nn.functional.linear(flat.to(ScalarType.Float32), gate.Weight.to(ScalarType.Float32));
        var (idx, w) = Route(logits, _c.NumExpertsPerTok, _c.NormTopkProb);
        var y = experts.forward(flat, idx, w);
        if (shared_expert is not null) y = y.Plus(shared_expert.forward(flat) * shared_expert_gate!.forward(flat).sigmoid());
        return y.view(shape);
    }
}
