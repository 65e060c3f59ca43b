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
