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

/// <summary>Hyperparameters of a run (all saved with a training checkpoint and restored on resume).</summary>
public sealed record TrainerOptions
{
    /// <summary>Peak learning rate.</summary>
    public double Lr { get; init; } = 1e-3;
    /// <summary>Final learning rate of the cosine, as a fraction of <see cref="Lr"/>.</summary>
    public double MinLrRatio { get; init; } = 0.1;
    /// <summary>Linear warmup steps.</summary>
    public int Warmup { get; init; }
    /// <summary>Schedule horizon (cosine reaches its minimum here); steps past it stay at the minimum (mtp train refuses to run past it).</summary>
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
    /// <summary>
    /// What is trained: every parameter (default) or, with <see cref="TrainMode.Mtp"/>, only the MTP depths (the
    /// trainer calls <see cref="MtpModel.FreezeMain"/>). Saved as "all" / "mtp"; a state saved before this option
    /// existed reads as all.
    /// </summary>
    [JsonConverter(typeof(TrainModeJsonConverter))]
    public TrainMode Train { get; init; } = TrainMode.All;

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

    /// <summary>Starts a run at step 0; with <see cref="TrainerOptions.Train"/> = mtp the model's main part is frozen first.</summary>
    /// <exception cref="ArgumentException">Train mode mtp on a model without MTP depths.</exception>
    public Trainer(MtpModel model, TokenSource data, TrainerOptions options, JsonObject? config = null)
    {
        Model = model;
        Data = data;
        Options = options;
        Config = config;
        if (options.Train == TrainMode.Mtp)
        {
            if (model.MtpDepthCount == 0) throw new ArgumentException($"train mode mtp: the {model.Family} model has no MTP depths to train");
            model.FreezeMain();
        }
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
    /// <summary>
    /// The folder the weights were loaded from, if any: its auxiliary files (tokenizer, README, code, sub-folders) and the
    /// HF source recorded in its conversion.json (<see cref="SourceLineage"/>, read when this is set, so a malformed
    /// record fails before training rather than at the save) are carried into every save, so the trained checkpoint
    /// exports like it.
    /// </summary>
    public string? SourceDir
    {
        get => _sourceDir;
        init
        {
            _sourceDir = value;
            // Loaded from an HF checkpoint: the record of that source; from the training layout: its conversion.json's.
            SourceLineage = value is null ? null : Model.SourceLineage ?? Lineage.Read(value);
        }
    }
    readonly string? _sourceDir;
    /// <summary>The HF source recorded by <see cref="SourceDir"/>'s conversion.json (null: none; export will need a reference or a dtype).</summary>
    public JsonObject? SourceLineage { get; private init; }
    /// <summary>The checkpoint the run started from (kept across resumes; saved as <c>run.checkpoint</c>).</summary>
    public string? StartCheckpoint { get; init; }
    /// <summary>The seed the run was started with, if known (saved as <c>run.seed</c> and checked on resume).</summary>
    public long? Seed { get; init; }

    /// <summary>Takes one step; every tensor it creates is disposed before it returns.</summary>
    public StepResult Step()
    {
        var sw = Stopwatch.StartNew();
        using var scope = NewDisposeScope();
        Model.train();
        Model.zero_grad();
        using var batch = Data.Next(Options.Batch, Options.SeqLen);
        var loss = Model.Loss(batch, Options.MtpLossScale);
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
/// A training-layout checkpoint (with the source's auxiliary files and a conversion.json carrying its lineage) plus
/// <c>training_state/</c> (<c>optimizer.safetensors</c>: exp_avg / exp_avg_sq per parameter, F32; <c>trainer_state.json</c>:
/// steps, options, data position, and under <c>run</c> the first checkpoint and the seed). The model part loads on its
/// own with <see cref="MtpModel.Load"/>; the sub-directory keeps the optimizer out of the model's shard glob.
/// </summary>
public static class TrainingCheckpoint
{
    /// <summary>Name of the training-state sub-directory.</summary>
    public const string StateDir = "training_state";
    const string Format = "mtp-train-state/1";

    static string DTypeName(Trainer t) => t.Model.DType == ScalarType.Float32 ? "f32" : "bf16";

    /// <summary>Whether <paramref name="dir"/> holds resumable training state.</summary>
    public static bool HasState(string dir) => File.Exists(Path.Combine(dir, StateDir, "trainer_state.json"));

    /// <summary>
    /// Writes everything through an <see cref="OutputTransaction"/> (<c>DIR.partial-PID</c>, renamed into place when
    /// complete; a previous output is replaced only once the new one is whole): a crash never leaves a half-written DIR.
    /// DIR may be replaced if it is a previous checkpoint output holding nothing else.
    /// </summary>
    public static void Save(Trainer t, string dir, long maxShardBytes = CheckpointIO.DefaultShardBytes)
    {
        using var txn = Begin(t, dir, new OutputRules { Force = true });
        txn.Run(tmp => { WriteInto(t, tmp, txn.Target, maxShardBytes); return 0; });
    }

    /// <summary>
    /// Starts the output transaction of a save into <paramref name="dir"/> (before training, so a refused or too small
    /// output fails first): the replace rules, and the planned bytes (weights in the model dtype plus two F32 moments per
    /// trainable parameter) against the free space.
    /// </summary>
    /// <exception cref="OutputException">DIR may not be replaced or the checkpoint does not fit.</exception>
    public static OutputTransaction Begin(Trainer t, string dir, OutputRules rules) => OutputTransaction.Begin(dir, PlannedBytes(t), rules);

    /// <summary>
    /// Bytes a save of <paramref name="t"/> is planned at: every weight in the model dtype plus two F32 moments per
    /// trainable parameter (with a frozen main model, the MTP depths' only).
    /// </summary>
    public static long PlannedBytes(Trainer t)
    {
        long elem = t.Model.DType == ScalarType.Float32 ? 4 : 2;
        long weights = t.Model.StateDict().Values.Sum(v => v.numel()) * elem;
        long moments = t.Model.TrainableParameters().Sum(p => p.Param.numel()) * 8;
        return weights + moments;
    }

    /// <summary>
    /// Writes the weights, config.json, the source's auxiliary files and lineage and <c>training_state/</c> into the
    /// (temporary) directory <paramref name="tmp"/>, which becomes <paramref name="finalDir"/> once complete.
    /// </summary>
    public static void WriteInto(Trainer t, string tmp, string finalDir, long maxShardBytes = CheckpointIO.DefaultShardBytes)
    {
        var dtype = CheckpointIO.ToSafeTensors(t.Model.DType);
        var config = t.Config ?? throw new InvalidOperationException("the trainer has no config.json to save");
        CheckpointIO.SaveModel(t.Model, tmp, config, dtype, maxShardBytes);
        SaveLineage(t, tmp, finalDir);
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
            ["dtype"] = DTypeName(t),
            ["options"] = JsonSerializer.SerializeToNode(t.Options),
            ["data"] = t.Data.SaveState(),
            ["optimizer_steps"] = steps,
            ["run"] = new JsonObject { ["checkpoint"] = t.StartCheckpoint, ["seed"] = t.Seed },
        };
        File.WriteAllText(Path.Combine(sd, "trainer_state.json"), state.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
    }

    /// <summary>
    /// Carries what the weights alone do not say: the source folder's auxiliary files, and a conversion.json with the HF
    /// source it records (or none, and then export asks for a reference or a dtype) plus how it was trained.
    /// </summary>
    public static void SaveLineage(Trainer t, string tmp, string final)
    {
        if (t.SourceDir is { } src) AuxiliaryFiles.Copy(src, tmp, final);
        var training = new JsonObject
        {
            ["trained_from"] = t.SourceDir is null ? null : Path.GetFullPath(t.SourceDir),
            ["start_checkpoint"] = t.StartCheckpoint,
            ["steps_done"] = t.StepsDone,
            ["dtype"] = DTypeName(t),
            ["train"] = TrainModeJsonConverter.Name(t.Options.Train),
        };
        Lineage.WriteDerived(tmp, "mtp train", t.SourceLineage, "training", training);
    }

    /// <summary>What a saved run was given, read from <c>trainer_state.json</c> without loading the weights.</summary>
    /// <param name="StepsDone">Steps taken.</param>
    /// <param name="DType">Training dtype (bf16 or f32).</param>
    /// <param name="Options">Hyperparameters and schedule.</param>
    /// <param name="Data">The data source's saved state (<c>kind</c>: synthetic or file with its <c>path</c> and <c>sha256</c>).</param>
    /// <param name="StartCheckpoint">The checkpoint the run started from, if recorded.</param>
    /// <param name="Seed">The run's seed, if recorded.</param>
    public sealed record SavedRun(long StepsDone, string DType, TrainerOptions Options, JsonObject Data, string? StartCheckpoint, long? Seed);

    /// <summary>Reads what the run saved in <paramref name="dir"/> was given (see <see cref="SavedRun"/>).</summary>
    public static SavedRun ReadRun(string dir)
    {
        var state = ReadState(dir, out string file);
        var run = state["run"] as JsonObject;
        try
        {
            return new SavedRun(
                state["steps_done"]?.GetValue<long>() ?? throw new InvalidDataException($"{file}: no steps_done"),
                state["dtype"]?.GetValue<string>() ?? throw new InvalidDataException($"{file}: no dtype"),
                state["options"].Deserialize<TrainerOptions>() ?? throw new InvalidDataException($"{file}: no options"),
                state["data"] as JsonObject ?? throw new InvalidDataException($"{file}: no data state"),
                run?["checkpoint"]?.GetValue<string>(), run?["seed"]?.GetValue<long>());
        }
        catch (Exception e) when (e is InvalidOperationException or FormatException or JsonException)
        {
            throw new InvalidDataException($"{file}: {e.Message}", e); // a value of the wrong JSON kind
        }
    }

    static JsonObject ReadState(string dir, out string file)
    {
        file = Path.Combine(dir, StateDir, "trainer_state.json");
        JsonNode? node;
        try { node = JsonNode.Parse(File.ReadAllText(file)); }
        catch (JsonException e) { throw new InvalidDataException($"{file}: not valid JSON: {e.Message}", e); }
        var state = node as JsonObject ?? throw new InvalidDataException($"{file}: not a JSON object");
        if (state["format"]?.GetValue<string>() != Format) throw new InvalidDataException($"{file}: format is not {Format}");
        return state;
    }

    /// <summary>
    /// Recreates a trainer from <paramref name="dir"/>: weights (in the saved dtype), moments, step counts,
    /// schedule and options, data position. <paramref name="adjust"/> may change options (e.g. the horizon).
    /// </summary>
    public static Trainer Resume(string dir, Device device, Func<TrainerOptions, TrainerOptions>? adjust = null)
    {
        string sd = Path.Combine(dir, StateDir);
        var state = ReadState(dir, out _);
        var run = state["run"] as JsonObject;
        var options = state["options"].Deserialize<TrainerOptions>() ?? throw new InvalidDataException("trainer_state.json: no options");
        if (adjust is not null) options = adjust(options);
        var model = MtpModel.Load(dir, device, CheckpointIO.ParseDType(state["dtype"]!.GetValue<string>()));
        var config = (JsonObject)JsonNode.Parse(File.ReadAllText(Path.Combine(dir, "config.json")))!;
        var trainer = new Trainer(model, TokenSource.FromState((JsonObject)state["data"]!), options, config)
        {
            StepsDone = state["steps_done"]!.GetValue<long>(),
            SourceDir = dir,
            StartCheckpoint = run?["checkpoint"]?.GetValue<string>(),
            Seed = run?["seed"]?.GetValue<long>(),
        };
        using var moments = Checkpoint.Open(Path.Combine(sd, "optimizer.safetensors"));
        trainer.Optimizer.Restore(moments, (JsonObject)state["optimizer_steps"]!);
        return trainer;
    }
}
