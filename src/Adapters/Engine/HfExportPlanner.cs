using System.Collections.Concurrent;
using System.Diagnostics;
using System.Text.Json.Nodes;
using Mtp.Quant;
using Mtp.SafeTensors;

namespace Mtp.Adapters;

/// <summary>
/// Plans training layout -> HF (<see cref="Converter.ToHf"/>): picks the HF format (the reference's, else the source record
/// of the input's conversion.json, else an explicit dtype), plans every HF tensor from the rule table, and lays the outputs
/// out in the reference's shards (else its own). Owns the open input and reference checkpoints until disposed.
/// </summary>
internal sealed class HfExportPlanner : IDisposable
{
    readonly string _inDir, _outDir;
    readonly ConvertOptions _o;
    readonly Stopwatch _clock;
    Checkpoint _nat; // re-keyed once by FormerTrainingNames.Upgrade when it uses an earlier version's names
    readonly Checkpoint? _reference;
    readonly ConversionReport? _report;
    LayoutFinding _layout = null!;
    // The HF dtype/shape of every tensor (reference header, else the recorded source header).
    readonly Dictionary<string, (DType DType, long[] Shape)> _hints = new(StringComparer.Ordinal);
    JsonObject _config = null!;
    string _family = null!;

    /// <summary>Opens the input (and reference) and checks that they are what an export needs.</summary>
    public HfExportPlanner(string inDir, string outDir, ConvertOptions options, Stopwatch clock)
    {
        _inDir = inDir; _outDir = outDir; _o = options; _clock = clock;
        _nat = Checkpoint.Open(inDir);
        try
        {
            _report = ConversionReport.Read(inDir);
            _reference = options.Reference != null ? Checkpoint.Open(options.Reference) : null;
            ResolveFormat();
        }
        catch
        {
            Dispose();
            throw;
        }
    }

    void ResolveFormat()
    {
        if (_o.Reference != null && Converter.SameDirectory(_o.Reference, _outDir))
            throw new AdapterException(AdapterErrorKind.Usage, "the output directory must not be the reference checkpoint");
        _config = (JsonObject?)_reference?.Config?.DeepClone() ?? _nat.Config
            ?? throw new AdapterException(AdapterErrorKind.Malformed, $"{_inDir}: no config.json");
        _family = _o.Family != null ? Converter.ResolveFamily(_o.Family, _config, _inDir)
            : _report?.Family is string rf && Families.Normalize(rf) is string nf ? nf : Converter.ResolveFamily(null, _config, _inDir);
        _layout = LayoutDetector.Detect(_inDir, _nat.Config, _nat.Tensors.Select(t => t.Name).ToList());
        if (_layout.Layout == CheckpointLayout.HuggingFace && LayoutDetector.RecordedDirection(_inDir) != null) throw Converter.WrongDirection(_inDir, _layout, "hf");
        if (_layout.Layout != CheckpointLayout.HuggingFace) _nat = FormerTrainingNames.Upgrade(_nat, _family);
        if (_reference != null) Converter.CheckReferenceFamily(_o.Reference!, _reference.Config, _inDir, _report, _nat.Config);
        if (_reference != null) foreach (var t in _reference.Tensors) _hints[t.Name] = (t.Info.DType, t.Info.Shape);
        else if (_o.DType == null && _report?.SourceTensors is { } st)
            foreach (var t in st) _hints[t.Name] = (t.DType, t.Shape);
        // Without a record of the source's tensors the quantization, the scales and the tied copies are unknown: an
        // unquantized guess would look like a faithful export, so it takes an explicit --dtype.
        // An HF checkpoint has no such record either: that it is HF is the one thing to say.
        if (_reference == null && _o.DType == null && _hints.Count == 0 && _layout.Layout == CheckpointLayout.HuggingFace)
            throw Converter.WrongDirection(_inDir, _layout, "hf");
        if (_reference == null && _o.DType == null && _hints.Count == 0)
            throw new AdapterException(AdapterErrorKind.Usage, $"{_inDir}: the HF format to export to is unknown ({Converter.ReportFileName} with the source's tensors is " +
                "missing: not written by mtp convert --to native, or by mtp train from such a checkpoint); pass --reference HF_DIR (the original " +
                "checkpoint) to return to its format, or --dtype bf16|f32 for an unquantized checkpoint") { File = _inDir };
        // The HF config: reference's, or ours with the quantization_config restored.
        if (_reference == null)
        {
            _config = (JsonObject)_config.DeepClone();
            var q = _report?.SourceQuantizationConfig;
            if (_o.DType == null && q != null && _hints.Count > 0) _config["quantization_config"] = q.DeepClone();
            Converter.SetDType(_config, _o.DType ?? DType.BF16);
        }
    }

    /// <summary>Plans every HF tensor and its shard; the plan reads from the input this planner owns.</summary>
    public ConversionPlan Plan(ConvertProgress? progress)
    {
        var natNames = _nat.Tensors.Select(t => t.Name).ToList();
        RuleTable table = Families.BuildTable(_family, _config, _hints.Count > 0 ? _hints.Keys : null, natNames);
        var planning = new PlanningState();
        var hp = new HfPlanContext(new HfPlanInputs(_nat, _reference, table, _hints, _o.DType, Converter.BlockOf(_config, table.Quant)),
            new ConcurrentDictionary<string, byte[]>(StringComparer.Ordinal), planning, Converter.ScalesArePowersOfTwo(_config));
        var side = new HfSide { Source = _nat, Planning = planning, Ctx = hp, Hints = _hints };
        side.PlanBindings(table);
        var outputs = side.Outputs;
        if (planning.Missing.Count > 0)
            throw Converter.Diagnose(planning.Missing, _inDir, "hf", _layout, new FamilyClaim(_o.Family, _family, _config, _o.Reference ?? _inDir));
        var order = _nat.Tensors.Select((t, i) => (t.Name, i)).ToDictionary(x => x.Name, x => x.i, StringComparer.Ordinal);
        var carried = Converter.HandleUnknown(planning.Unknown, _o, _inDir, _nat, outputs, order);
        Converter.CheckDuplicateOutputs(outputs);
        var (shards, metadata) = _reference != null ? ReferenceShards(outputs) : OwnShards(outputs);
        return new ConversionPlan
        {
            Direction = ConversionDirection.ToHf, Family = _family, InDir = _inDir, OutDir = _outDir, Options = _o, Source = _nat,
            Outputs = outputs, Shards = shards, Metadata = metadata, Config = _config, Carried = carried, Clock = _clock, PlanTime = _clock.Elapsed,
            Extra = new JsonObject
            {
                ["reference"] = _o.Reference == null ? null : Path.GetFullPath(_o.Reference),
                // With a reference the shards are the reference's; only our own split can make one too large.
                ["warnings"] = _reference == null ? Converter.OversizedShards(shards, _o, progress) : new JsonArray(),
            },
            ReferenceIndexPath = _reference != null ? Path.Combine(_reference.Directory, ShardIndex.FileName) : null,
            QuantPieces = hp.QuantPieces,
        };
    }

    (IReadOnlyList<ShardPlan>, Dictionary<string, IReadOnlyDictionary<string, string>>?) OwnShards(List<PlannedTensor> outputs)
    {
        outputs.Sort((a, b) => a.Order.CompareTo(b.Order));
        return (ShardPlanner.Plan(outputs.Select(o => o.Spec).ToList(), _o.MaxShardBytes), null);
    }

    // The reference's shards, names and metadata; what it lacks joins the last shard (only with --allow-unknown).
    (IReadOnlyList<ShardPlan>, Dictionary<string, IReadOnlyDictionary<string, string>>?) ReferenceShards(List<PlannedTensor> outputs)
    {
        Checkpoint reference = _reference!;
        var byName = outputs.ToDictionary(o => o.Name, StringComparer.Ordinal);
        var notInRef = outputs.Where(o => !reference.Contains(o.Name)).Select(o => o.Name).ToList();
        var notProduced = reference.Tensors.Where(t => !byName.ContainsKey(t.Name)).Select(t => t.Name).ToList();
        if (notProduced.Count > 0)
            throw new AdapterException(AdapterErrorKind.Inconsistent, $"{_inDir}: {notProduced.Count} tensor(s) of the reference have no source in the training checkpoint: {NameList.Cut(notProduced)}")
            { File = _inDir, Tensor = notProduced[0], Names = notProduced };
        if (notInRef.Count > 0 && !_o.AllowUnknown)
            throw new AdapterException(AdapterErrorKind.Inconsistent, $"{_inDir}: {notInRef.Count} tensor(s) would be written that the reference does not have: {NameList.Cut(notInRef)}; --allow-unknown adds them to the last shard")
            { File = _inDir, Tensor = notInRef[0], Names = notInRef };
        var list = reference.Files.Select(f => new ShardPlan(Path.GetFileName(f.Path), f.Tensors.OrderBy(t => t.Begin).Select(t => byName[t.Name].Spec).ToList())).ToList();
        if (notInRef.Count > 0)
        {
            var last = list[^1];
            list[^1] = last with { Tensors = last.Tensors.Concat(notInRef.Select(n => byName[n].Spec)).ToList() };
        }
        return (list, reference.Files.ToDictionary(f => Path.GetFileName(f.Path), f => f.Metadata, StringComparer.Ordinal));
    }

    /// <inheritdoc />
    public void Dispose()
    {
        _reference?.Dispose();
        _nat.Dispose();
    }
}
