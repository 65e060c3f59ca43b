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
        var config = ConfigReader.Read(dir);
        var trainer = new Trainer(model, TokenSource.FromState((JsonObject)state["data"]!), options, config)
        {
            StepsDone = state["steps_done"]!.GetValue<long>(),
            SourceDir = dir,
            StartCheckpoint = run?["checkpoint"]?.GetValue<string>(),
            Seed = run?["seed"]?.GetValue<long>(),
        };
        // A state saved by an earlier version under its former parameter names is read under the current ones.
        var former = Families.Module(model.Family).FormerNames;
        using var moments = WithCurrentNames(Checkpoint.Open(Path.Combine(sd, "optimizer.safetensors")), former);
        trainer.Optimizer.Restore(moments, WithCurrentNames((JsonObject)state["optimizer_steps"]!, former));
        return trainer;
    }

    /// <summary>Moments saved under an earlier version's parameter names (<c>exp_avg.OLD</c>), read under the current ones.</summary>
    static Checkpoint WithCurrentNames(Checkpoint moments, FormerTrainingNames? former)
    {
        if (former is null) return moments;
        static (string Kind, string Param) Split(string n) => n.IndexOf('.') is int d and > 0 ? (n[..(d + 1)], n[(d + 1)..]) : ("", n);
        if (!former.AnyIn(moments.Tensors.Select(t => Split(t.Name).Param))) return moments;
        return moments.WithNames(n => Split(n) is var (kind, param) && former.Current(param) is string c ? kind + c : null);
    }

    /// <summary>Step counts keyed by an earlier version's parameter names, keyed by the current ones.</summary>
    static JsonObject WithCurrentNames(JsonObject steps, FormerTrainingNames? former)
    {
        if (former is null || !former.AnyIn(steps.Select(kv => kv.Key))) return steps;
        var renamed = new JsonObject();
        foreach (var (name, value) in steps) renamed[former.Current(name) ?? name] = value?.DeepClone();
        return renamed;
    }
}
