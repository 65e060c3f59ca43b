using System.Runtime.InteropServices;
using System.Text.Json.Nodes;
using Mtp.SafeTensors;
using TorchSharp;
using static TorchSharp.torch;

namespace Mtp.Model;

/// <summary>A checkpoint does not match the model: the message shows a few names of each kind, the properties hold all of them.</summary>
public sealed class ModelLoadException(string message, IReadOnlyList<string> missing, IReadOnlyList<string> unexpected, IReadOnlyList<string> mismatched)
    : Exception(message)
{
    /// <summary>Names the model expects but the checkpoint lacks.</summary>
    public IReadOnlyList<string> Missing { get; } = missing;
    /// <summary>Names in the checkpoint the model has no place for.</summary>
    public IReadOnlyList<string> Unexpected { get; } = unexpected;
    /// <summary>"name: checkpoint [..] dtype vs model [..]" for shape or dtype problems.</summary>
    public IReadOnlyList<string> Mismatched { get; } = mismatched;

    /// <summary>Every name the message lists only in part: missing, then unexpected, then mismatched.</summary>
    public IReadOnlyList<string> Names => Missing.Concat(Unexpected).Concat(Mismatched).ToList();
}

/// <summary>Strict load and atomic save of training-layout checkpoints through Mtp.SafeTensors.</summary>
public static class CheckpointIO
{
    /// <summary>Default maximum shard size when saving.</summary>
    public const long DefaultShardBytes = 5L << 30;

    /// <summary>Parses "bf16" / "f32" (also "bfloat16", "float32").</summary>
    public static ScalarType ParseDType(string s) => s.ToLowerInvariant() switch
    {
        "bf16" or "bfloat16" => ScalarType.BFloat16,
        "f32" or "fp32" or "float32" => ScalarType.Float32,
        _ => throw new ArgumentException($"dtype '{s}' is not supported (bf16 or f32)"),
    };

    /// <summary>The safetensors dtype a torch dtype is saved as.</summary>
    public static DType ToSafeTensors(ScalarType t) => t switch
    {
        ScalarType.BFloat16 => DType.BF16,
        ScalarType.Float32 => DType.F32,
        _ => throw new ArgumentException($"dtype {t} cannot be saved (bf16 or f32)"),
    };

    /// <summary>
    /// Fills every parameter and buffer of <paramref name="model"/> from <paramref name="src"/>, strictly: every
    /// source tensor lands somewhere (or is one the model declares it ignores), every parameter is filled,
    /// shapes match exactly. Each tensor goes straight into the parameter's storage (<see cref="TensorFill"/>), one at a
    /// time, so loading needs the model's memory plus one chunk. Records the source's config and, for a Hugging Face
    /// source, its lineage on the model. Returns the ignored tensors (carried unchanged on save).
    /// </summary>
    public static IReadOnlyList<string> Fill(MtpModel model, ITensorSource src)
    {
        var state = model.StateDict();
        var names = src.Tensors.Select(t => t.Name).ToList();
        var missing = state.Keys.Where(n => !src.Contains(n)).ToList();
        var ignored = names.Where(n => !state.ContainsKey(n) && model.IsIgnoredCheckpointTensor(n)).ToList();
        var unexpected = names.Where(n => !state.ContainsKey(n) && !model.IsIgnoredCheckpointTensor(n)).ToList();
        var mismatched = new List<string>();
        foreach (var spec in src.Tensors)
        {
            if (!state.TryGetValue(spec.Name, out var t)) continue;
            if (!spec.Shape.SequenceEqual(t.shape))
                mismatched.Add($"{spec.Name}: checkpoint {Shapes.Format(spec.Shape)} vs model {Shapes.Format(t.shape)}");
            else if (IsInteger(t.dtype) ? spec.DType is not (DType.I32 or DType.I64) : spec.DType is not (DType.F32 or DType.BF16 or DType.F16))
                mismatched.Add($"{spec.Name}: dtype {spec.DType} cannot fill a {t.dtype} tensor (floats: F32/BF16/F16, dequantize first; integers: I32/I64)");
        }
        if (missing.Count + unexpected.Count + mismatched.Count > 0)
        {
            var parts = new List<string>();
            if (missing.Count > 0) parts.Add($"{missing.Count} missing: {Mtp.Adapters.NameList.Cut(missing)}");
            if (unexpected.Count > 0) parts.Add($"{unexpected.Count} unexpected: {Mtp.Adapters.NameList.Cut(unexpected)}");
            if (mismatched.Count > 0) parts.Add($"{mismatched.Count} mismatched: {Mtp.Adapters.NameList.Cut(mismatched, separator: "; ")}");
            throw new ModelLoadException($"{src.Directory}: checkpoint does not match the {model.Family} MTP model: " + string.Join(" | ", parts),
                missing, unexpected, mismatched);
        }
        model.CarriedTensors = src.Tensors.Where(t => ignored.Contains(t.Name)).Select(t => (t, TensorFill.Bytes(src, t.Name))).ToList();
        using (no_grad())
            foreach (var spec in src.Tensors)
                if (state.TryGetValue(spec.Name, out var target)) TensorFill.Into(src, spec, target); // else ignored by the model (carried)
        model.SourceConfig = src.Config;
        model.SourceLineage = (src as Mtp.Adapters.NativeView)?.Lineage;
        return ignored;
    }

    static bool IsInteger(ScalarType t) => t is ScalarType.Int32 or ScalarType.Int64 or ScalarType.Int16 or ScalarType.Int8 or ScalarType.Byte;

    /// <summary>Decodes F32 / BF16 / F16 little-endian bytes to floats.</summary>
    public static float[] ReadFloat(ReadOnlySpan<byte> bytes, TensorInfo info)
    {
        long n = info.ElementCount;
        var r = new float[n];
        switch (info.DType)
        {
            case DType.F32:
                MemoryMarshal.Cast<byte, float>(bytes).CopyTo(r);
                break;
            case DType.BF16:
                var u = MemoryMarshal.Cast<byte, ushort>(bytes);
                for (long i = 0; i < n; i++) r[i] = BitConverter.Int32BitsToSingle(u[(int)i] << 16);
                break;
            case DType.F16:
                var h = MemoryMarshal.Cast<byte, Half>(bytes);
                for (long i = 0; i < n; i++) r[i] = (float)h[(int)i];
                break;
            default:
                throw new ArgumentException($"{info.Name}: dtype {info.DType} is not a training dtype");
        }
        return r;
    }

    /// <summary>Bytes of <paramref name="t"/> in <paramref name="dtype"/> (F32 exact; BF16 rounds to nearest even).</summary>
    public static byte[] ToBytes(Tensor t, DType dtype)
    {
        using var scope = NewDisposeScope();
        if (dtype == DType.I32) return MemoryMarshal.AsBytes(t.detach().to(ScalarType.Int32).cpu().contiguous().data<int>().ToArray().AsSpan()).ToArray();
        if (dtype == DType.I64) return MemoryMarshal.AsBytes(t.detach().to(ScalarType.Int64).cpu().contiguous().data<long>().ToArray().AsSpan()).ToArray();
        var f = t.detach().to(ScalarType.Float32).cpu().contiguous().data<float>().ToArray();
        switch (dtype)
        {
            case DType.F32:
                return MemoryMarshal.AsBytes(f.AsSpan()).ToArray();
            case DType.BF16:
                var r = new byte[f.Length * 2];
                var o = MemoryMarshal.Cast<byte, ushort>(r.AsSpan());
                for (int i = 0; i < f.Length; i++) o[i] = Mtp.Quant.BFloat16.FromFloat(f[i]);
                return r;
            default:
                throw new ArgumentException($"cannot save as {dtype}");
        }
    }

    /// <summary>
    /// The dtype a tensor is saved in: integers keep their type, tensors the family keeps in F32
    /// (<see cref="MtpModel.KeepsFloat32"/>, e.g. DeepSeek's router bias) stay F32, the rest <paramref name="dtype"/>.
    /// </summary>
    public static DType SaveDType(MtpModel model, string name, Tensor t, DType dtype) => t.dtype switch
    {
        ScalarType.Int32 => DType.I32,
        ScalarType.Int64 => DType.I64,
        _ when model.KeepsFloat32(name) => DType.F32,
        _ => dtype,
    };

    /// <summary>
    /// Writes config.json and the model's tensors (all names of <see cref="MtpModel.StateDict"/>, plus <see cref="MtpModel.CarriedTensors"/> unchanged) into
    /// <paramref name="dir"/>, sharded with an index when over <paramref name="maxShardBytes"/>.
    /// <paramref name="dir"/> should be a fresh directory (TrainingCheckpoint.Save makes this atomic).
    /// </summary>
    public static void SaveModel(MtpModel model, string dir, JsonObject config, DType dtype, long maxShardBytes = DefaultShardBytes)
    {
        Directory.CreateDirectory(dir);
        var state = model.StateDict();
        var specs = state.Select(kv => new TensorSpec(kv.Key, SaveDType(model, kv.Key, kv.Value, dtype), kv.Value.shape.ToArray()))
            .Concat(model.CarriedTensors.Select(c => c.Spec)).ToList();
        var carried = model.CarriedTensors.ToDictionary(c => c.Spec.Name, c => c.Data, StringComparer.Ordinal);
        var shards = ShardPlanner.Plan(specs, maxShardBytes);
        foreach (var shard in shards)
        {
            using var w = SafeTensorsWriter.Create(Path.Combine(dir, shard.FileName), shard.Tensors, new Dictionary<string, string> { ["format"] = "pt" });
            foreach (var spec in shard.Tensors) w.Write(spec.Name, state.TryGetValue(spec.Name, out var t) ? ToBytes(t, spec.DType) : carried[spec.Name]);
            w.Complete();
        }
        if (shards.Count > 1) ShardPlanner.WriteIndex(dir, shards);
        var cfg = (JsonObject)config.DeepClone();
        cfg.Remove("quantization_config");
        cfg["torch_dtype"] = dtype == DType.F32 ? "float32" : "bfloat16";
        File.WriteAllText(Path.Combine(dir, "config.json"), cfg.ToJsonString(new System.Text.Json.JsonSerializerOptions { WriteIndented = true }));
    }
}
