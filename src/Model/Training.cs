using System.Diagnostics;
using System.Text.Json;
using System.Text.Json.Nodes;
using Mtp.SafeTensors;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Mtp.Model;

/// <summary>Hyperparameters of a run (all saved with a training checkpoint and restored on resume).</summary>
public sealed record TrainerOptions
{
    /// <summary>Peak learning rate.</summary>
    public double Lr { get; init; } = 1e-3;
    /// <summary>Final learning rate of the cosine, as a fraction of <see cref="Lr"/>.</summary>
    public double MinLrRatio { get; init; } = 0.1;
    /// <summary>Linear warmup steps.</summary>
    public int Warmup { get; init; }
    /// <summary>Schedule horizon (cosine reaches its minimum here); steps past it stay at the minimum.</summary>
    public int TotalSteps { get; init; } = 100;
    /// <summary>Rows per batch.</summary>
    public int Batch { get; init; } = 2;
    /// <summary>Tokens per row.</summary>
    public int SeqLen { get; init; } = 64;
    /// <summary>lambda of total = main + lambda / D * Σ mtp_k.</summary>
    public double MtpLossScale { get; init; } = 0.1;
    /// <summary>AdamW decoupled weight decay (matrices only; norms and 1-D tensors are not decayed).</summary>
    public double WeightDecay { get; init; } = 0.01;
    /// <summary>AdamW beta1.</summary>
    public double Beta1 { get; init; } = 0.9;
    /// <summary>AdamW beta2.</summary>
    public double Beta2 { get; init; } = 0.95;
    /// <summary>AdamW epsilon.</summary>
    public double Eps { get; init; } = 1e-8;
    /// <summary>Global gradient-norm clip.</summary>
    public double ClipNorm { get; init; } = 1.0;
    /// <summary>Roll position ids for MTP depths (default false: original positions).</summary>
    public bool RollPositions { get; init; }

    /// <summary>Learning rate of 0-based step <paramref name="step"/>: linear warmup, then cosine to MinLrRatio·Lr.</summary>
    public double LrAt(long step)
    {
        if (step < Warmup) return Lr * (step + 1) / Warmup;
        double progress = Math.Clamp((double)(step - Warmup) / Math.Max(1, TotalSteps - Warmup), 0, 1);
        double min = Lr * MinLrRatio;
        return min + (Lr - min) * 0.5 * (1 + Math.Cos(Math.PI * progress));
    }
}

/// <summary>What one optimizer step did.</summary>
/// <param name="Step">1-based index of the step just taken.</param>
/// <param name="Loss">Main next-token CE.</param>
/// <param name="TotalLoss">Objective that was back-propagated.</param>
/// <param name="MtpLosses">CE of each MTP depth.</param>
/// <param name="GradNorm">Global gradient norm before clipping.</param>
/// <param name="Lr">Learning rate used.</param>
/// <param name="Tokens">Tokens in the batch.</param>
/// <param name="Seconds">Wall time of the step.</param>
public sealed record StepResult(long Step, double Loss, double TotalLoss, IReadOnlyList<double> MtpLosses, double GradNorm, double Lr, long Tokens, double Seconds)
{
    /// <summary>Tokens per second of this step.</summary>
    public double TokensPerSecond => Tokens / Math.Max(Seconds, 1e-9);
}

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

/// <summary>The training loop: one <see cref="Step"/> = batch, forward, MTP loss, backward, clip, AdamW, schedule.</summary>
public sealed class Trainer : IDisposable
{
    readonly List<(string Name, Parameter P)> _params;

    /// <summary>Starts a run at step 0.</summary>
    public Trainer(MtpModel model, TokenSource data, TrainerOptions options, JsonObject? config = null)
    {
        Model = model;
        Data = data;
        Options = options;
        Config = config;
        _params = model.TrainableParameters().ToList();
        Optimizer = new AdamW(_params, options);
    }

    /// <summary>The model being trained.</summary>
    public MtpModel Model { get; }
    /// <summary>The batch source.</summary>
    public TokenSource Data { get; }
    /// <summary>Hyperparameters.</summary>
    public TrainerOptions Options { get; }
    /// <summary>The optimizer.</summary>
    public AdamW Optimizer { get; }
    /// <summary>The checkpoint's config.json (written back on save), if known.</summary>
    public JsonObject? Config { get; }
    /// <summary>Steps taken so far (across resumes).</summary>
    public long StepsDone { get; internal set; }

    /// <summary>Takes one step; every tensor it creates is disposed before it returns.</summary>
    public StepResult Step()
    {
        var sw = Stopwatch.StartNew();
        using var scope = NewDisposeScope();
        Model.train();
        Model.zero_grad();
        using var batch = Data.Next(Options.Batch, Options.SeqLen);
        var loss = Model.Loss(batch, Options.MtpLossScale, new ForwardOptions(Options.RollPositions));
        loss.Total.backward();
        var grads = _params.Select(p => p.P.grad).Where(g => g is not null).Select(g => g!).ToList();
        var norm = stack(grads.Select(g => g.to(ScalarType.Float32).norm()).ToArray()).norm();
        double gradNorm = norm.item<float>();
        if (Options.ClipNorm > 0)
        {
            double coef = Options.ClipNorm / (gradNorm + 1e-6);
            if (coef < 1)
                using (no_grad())
                    foreach (var g in grads) g.TimesInPlace(coef);
        }
        double lr = Options.LrAt(StepsDone);
        Optimizer.Step(lr);
        Model.zero_grad();
        StepsDone++;
        var mtp = loss.Mtp.Select(t => (double)t.item<float>()).ToList();
        double main = loss.Main.item<float>(), total = loss.Total.item<float>();
        return new StepResult(StepsDone, main, total, mtp, gradNorm, lr, (long)Options.Batch * Options.SeqLen, sw.Elapsed.TotalSeconds);
    }

    /// <summary>Saves weights, optimizer, schedule and data position atomically (see <see cref="TrainingCheckpoint"/>).</summary>
    public void Save(string dir, long maxShardBytes = CheckpointIO.DefaultShardBytes) => TrainingCheckpoint.Save(this, dir, maxShardBytes);

    /// <inheritdoc />
    public void Dispose() => Optimizer.Dispose();
}

/// <summary>
/// A training-layout checkpoint plus <c>training_state/</c> (<c>optimizer.safetensors</c>: exp_avg / exp_avg_sq
/// per parameter, F32; <c>trainer_state.json</c>: steps, options, data position). The model part loads on its
/// own with <see cref="MtpModel.Load"/>; the sub-directory keeps the optimizer out of the model's shard glob.
/// </summary>
public static class TrainingCheckpoint
{
    /// <summary>Name of the training-state sub-directory.</summary>
    public const string StateDir = "training_state";
    const string Format = "mtp-train-state/1";

    /// <summary>Whether <paramref name="dir"/> holds resumable training state.</summary>
    public static bool HasState(string dir) => File.Exists(Path.Combine(dir, StateDir, "trainer_state.json"));

    /// <summary>
    /// Writes everything to <c>DIR.tmp-PID</c>, then swaps it into place (an existing DIR is renamed away
    /// first and removed after): a crash never leaves a half-written DIR.
    /// </summary>
    public static void Save(Trainer t, string dir, long maxShardBytes = CheckpointIO.DefaultShardBytes)
    {
        string full = Path.GetFullPath(dir).TrimEnd(Path.DirectorySeparatorChar);
        string tmp = full + ".tmp-" + Environment.ProcessId;
        if (Directory.Exists(tmp)) Directory.Delete(tmp, true);
        var dtype = CheckpointIO.ToSafeTensors(t.Model.DType);
        var config = t.Config ?? throw new InvalidOperationException("the trainer has no config.json to save");
        CheckpointIO.SaveModel(t.Model, tmp, config, dtype, maxShardBytes);
        string sd = Path.Combine(tmp, StateDir);
        Directory.CreateDirectory(sd);
        var moments = t.Optimizer.StateTensors().ToList();
        SafeTensorsWriter.WriteFile(Path.Combine(sd, "optimizer.safetensors"),
            moments.Select(m => (new TensorSpec(m.Name, DType.F32, m.T.shape.ToArray()), CheckpointIO.ToBytes(m.T, DType.F32))));
        var steps = new JsonObject();
        foreach (var (n, s) in t.Optimizer.Steps) steps[n] = s;
        var state = new JsonObject
        {
            ["format"] = Format,
            ["steps_done"] = t.StepsDone,
            ["dtype"] = t.Model.DType == ScalarType.Float32 ? "f32" : "bf16",
            ["options"] = JsonSerializer.SerializeToNode(t.Options),
            ["data"] = t.Data.SaveState(),
            ["optimizer_steps"] = steps,
        };
        File.WriteAllText(Path.Combine(sd, "trainer_state.json"), state.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
        string old = full + ".old-" + Environment.ProcessId;
        if (Directory.Exists(full)) Directory.Move(full, old);
        Directory.Move(tmp, full);
        if (Directory.Exists(old)) Directory.Delete(old, true);
    }

    /// <summary>
    /// Recreates a trainer from <paramref name="dir"/>: weights (in the saved dtype), moments, step counts,
    /// schedule and options, data position. <paramref name="adjust"/> may change options (e.g. the horizon).
    /// </summary>
    public static Trainer Resume(string dir, Device device, Func<TrainerOptions, TrainerOptions>? adjust = null)
    {
        string sd = Path.Combine(dir, StateDir);
        var state = JsonNode.Parse(File.ReadAllText(Path.Combine(sd, "trainer_state.json"))) as JsonObject
            ?? throw new InvalidDataException($"{sd}/trainer_state.json: not a JSON object");
        if (state["format"]?.GetValue<string>() != Format) throw new InvalidDataException($"{sd}/trainer_state.json: format is not {Format}");
        var options = state["options"].Deserialize<TrainerOptions>() ?? throw new InvalidDataException("trainer_state.json: no options");
        if (adjust is not null) options = adjust(options);
        var model = MtpModel.Load(dir, device, CheckpointIO.ParseDType(state["dtype"]!.GetValue<string>()));
        var config = (JsonObject)JsonNode.Parse(File.ReadAllText(Path.Combine(dir, "config.json")))!;
        var trainer = new Trainer(model, TokenSource.FromState((JsonObject)state["data"]!), options, config)
        {
            StepsDone = state["steps_done"]!.GetValue<long>(),
        };
        using var moments = Checkpoint.Open(Path.Combine(sd, "optimizer.safetensors"));
        trainer.Optimizer.Restore(moments, (JsonObject)state["optimizer_steps"]!);
        return trainer;
    }
}
