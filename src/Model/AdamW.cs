using System.Diagnostics;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.Json.Serialization;
using Mtp.Adapters;
using Mtp.SafeTensors;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Mtp.Model;

/// <summary>
/// AdamW (PyTorch semantics, per-parameter step counts, F32 moments) with exactly saveable state.
/// Parameters that got no gradient in a step are skipped (as torch.optim does).
/// </summary>
public sealed class AdamW : IDisposable
{
    readonly List<(string Name, Parameter P, Tensor M, Tensor V)> _slots = new();
    readonly Dictionary<string, long> _steps = new(StringComparer.Ordinal);
    readonly TrainerOptions _o;

    /// <summary>Creates zero moments for every parameter.</summary>
    public AdamW(IEnumerable<(string Name, Parameter Param)> parameters, TrainerOptions options)
    {
        _o = options;
        foreach (var (n, p) in parameters)
        {
            var m = zeros(p.shape, dtype: ScalarType.Float32, device: p.device).DetachFromDisposeScope();
            var v = zeros(p.shape, dtype: ScalarType.Float32, device: p.device).DetachFromDisposeScope();
            _slots.Add((n, p, m, v));
            _steps[n] = 0;
        }
    }

    /// <summary>Per-parameter step counts.</summary>
    public IReadOnlyDictionary<string, long> Steps => _steps;

    /// <summary>Applies one update with learning rate <paramref name="lr"/> using the current gradients.</summary>
    public void Step(double lr)
    {
        using var _ = no_grad();
        foreach (var (name, p, m, v) in _slots)
        {
            using var scope = NewDisposeScope();
            var g = p.grad;
            if (g is null) continue;
            long t = ++_steps[name];
            var gf = g.to(ScalarType.Float32);
            var w = p.dtype == ScalarType.Float32 ? p : p.to(ScalarType.Float32);
            if (_o.WeightDecay > 0 && p.dim() >= 2) w.TimesInPlace(1 - lr * _o.WeightDecay);
            m.TimesInPlace(_o.Beta1).PlusInPlace(gf, 1 - _o.Beta1);
            v.TimesInPlace(_o.Beta2).AddProductInPlace(gf, gf, 1 - _o.Beta2);
            double bc1 = 1 - Math.Pow(_o.Beta1, t), bc2 = 1 - Math.Pow(_o.Beta2, t);
            var denom = v.sqrt().DividedBy(Math.Sqrt(bc2)).PlusInPlace(_o.Eps);
            w.AddQuotientInPlace(m, denom, -lr / bc1);
            if (!ReferenceEquals(w, p)) p.copy_(w);
        }
    }

    /// <summary>Moments as (name, tensor) for saving: <c>exp_avg.{param}</c>, <c>exp_avg_sq.{param}</c>.</summary>
    public IEnumerable<(string Name, Tensor T)> StateTensors() =>
        _slots.SelectMany(s => new[] { ("exp_avg." + s.Name, s.M), ("exp_avg_sq." + s.Name, s.V) });

    /// <summary>Restores moments and step counts (every slot must be present with its shape).</summary>
    public void Restore(Checkpoint moments, JsonObject steps)
    {
        using var _ = no_grad();
        foreach (var (name, _p, m, v) in _slots)
        {
            foreach (var (key, t) in new[] { ("exp_avg." + name, m), ("exp_avg_sq." + name, v) })
            {
                if (!moments.TryGet(key, out var loc)) throw new InvalidDataException($"optimizer state lacks '{key}'");
                if (!loc.Info.Shape.SequenceEqual(t.shape)) throw new InvalidDataException($"optimizer state '{key}' is {loc.Info.ShapeText}, parameter is {Shapes.Format(t.shape)}");
                using var src = tensor(CheckpointIO.ReadFloat(loc.File.GetBytes(loc.Info), loc.Info), loc.Info.Shape);
                t.copy_(src);
            }
            _steps[name] = steps[name]?.GetValue<long>() ?? throw new InvalidDataException($"optimizer state lacks the step count of '{name}'");
        }
    }

    /// <inheritdoc />
    public void Dispose()
    {
        foreach (var s in _slots) { s.M.Dispose(); s.V.Dispose(); }
    }
}
