using System.Runtime.InteropServices;
using System.Text.Json.Nodes;
using Mtp.SafeTensors;
using TorchSharp;
using static TorchSharp.torch;

namespace Mtp.Model;

/// <summary>A checkpoint does not match the model: lists every missing, unexpected and mismatched tensor.</summary>
public sealed class ModelLoadException(string message, IReadOnlyList<string> missing, IReadOnlyList<string> unexpected, IReadOnlyList<string> mismatched)
    : Exception(message)
{
    /// <summary>Names the model expects but the checkpoint lacks.</summary>
    public IReadOnlyList<string> Missing { get; } = missing;
    /// <summary>Names in the checkpoint the model has no place for.</summary>
    public IReadOnlyList<string> Unexpected { get; } = unexpected;
    /// <summary>"name: checkpoint [..] dtype vs model [..]" for shape or dtype problems.</summary>
    public IReadOnlyList<string> Mismatched { get; } = mismatched;
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
    /// Loads <paramref name="dir"/> (config.json + safetensors, sharded or not) strictly: every tensor lands in
    /// a parameter or buffer, every parameter is filled, shapes must match exactly. Values are converted to
    /// <paramref name="dtype"/> (the router bias stays F32). Optional per-depth embed_tokens / shared_head copies
    /// are created when present. All problems are reported in one <see cref="ModelLoadException"/>.
    /// </summary>
    public static MtpModel Load(string dir, Device device, ScalarType dtype)
    {
        var cfg = DeepSeekV3Config.Load(dir);
        using var ckpt = Checkpoint.Open(dir);
        int d = cfg.NumNextnPredictLayers;
        var ownEmb = Enumerable.Range(0, d).Select(k => ckpt.Contains($"mtp.layers.{k}.embed_tokens.weight")).ToArray();
        var ownHead = Enumerable.Range(0, d).Select(k => ckpt.Contains($"mtp.layers.{k}.shared_head.head.weight")).ToArray();
        MtpModel model;
        using (no_grad()) model = new MtpModel(cfg, dtype, device, ownEmb, ownHead);
        try
        {
            Fill(model, ckpt);
        }
        catch
        {
            model.Dispose();
            throw;
        }
        return model;
    }

    /// <summary>Fills every parameter and buffer of <paramref name="model"/> from <paramref name="ckpt"/>, strictly.</summary>
    public static void Fill(MtpModel model, Checkpoint ckpt)
    {
        var state = model.StateDict();
        var missing = state.Keys.Where(n => !ckpt.Contains(n)).ToList();
        var unexpected = ckpt.Tensors.Select(t => t.Name).Where(n => !state.ContainsKey(n)).ToList();
        var mismatched = new List<string>();
        foreach (var loc in ckpt.Tensors)
        {
            if (!state.TryGetValue(loc.Name, out var t)) continue;
            if (!loc.Info.Shape.SequenceEqual(t.shape))
                mismatched.Add($"{loc.Name}: checkpoint {loc.Info.ShapeText} vs model {Shapes.Format(t.shape)}");
            else if (loc.Info.DType is not (DType.F32 or DType.BF16 or DType.F16))
                mismatched.Add($"{loc.Name}: dtype {loc.Info.DType} cannot be trained (F32/BF16/F16 only; dequantize first)");
        }
        if (missing.Count + unexpected.Count + mismatched.Count > 0)
        {
            var parts = new List<string>();
            if (missing.Count > 0) parts.Add($"{missing.Count} missing: {string.Join(", ", missing)}");
            if (unexpected.Count > 0) parts.Add($"{unexpected.Count} unexpected: {string.Join(", ", unexpected)}");
            if (mismatched.Count > 0) parts.Add($"{mismatched.Count} mismatched: {string.Join("; ", mismatched)}");
            throw new ModelLoadException($"{ckpt.Directory}: checkpoint does not match the DeepSeek-V3 MTP model: " + string.Join(" | ", parts),
                missing, unexpected, mismatched);
        }
        using var _ = no_grad();
        foreach (var loc in ckpt.Tensors)
        {
            var target = state[loc.Name];
            using var scope = NewDisposeScope();
            var src = ReadFloat(loc.File.GetBytes(loc.Info), loc.Info);
            target.copy_(tensor(src, loc.Info.Shape).to(target.dtype, target.device));
        }
    }

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

    /// <summary>The dtype a tensor is saved in: the router bias always F32, the rest <paramref name="dtype"/>.</summary>
    public static DType SaveDType(string name, DType dtype) => name.EndsWith("e_score_correction_bias", StringComparison.Ordinal) ? DType.F32 : dtype;

    /// <summary>
    /// Writes config.json and the model's tensors (all names of <see cref="MtpModel.StateDict"/>) into
    /// <paramref name="dir"/>, sharded with an index when over <paramref name="maxShardBytes"/>.
    /// <paramref name="dir"/> should be a fresh directory (TrainingCheckpoint.Save makes this atomic).
    /// </summary>
    public static void SaveModel(MtpModel model, string dir, JsonObject config, DType dtype, long maxShardBytes = DefaultShardBytes)
    {
        Directory.CreateDirectory(dir);
        var state = model.StateDict();
        var specs = state.Select(kv => new TensorSpec(kv.Key, SaveDType(kv.Key, dtype), kv.Value.shape.ToArray())).ToList();
        var shards = ShardPlanner.Plan(specs, maxShardBytes);
        foreach (var shard in shards)
        {
            using var w = SafeTensorsWriter.Create(Path.Combine(dir, shard.FileName), shard.Tensors, new Dictionary<string, string> { ["format"] = "pt" });
            foreach (var spec in shard.Tensors) w.Write(spec.Name, ToBytes(state[spec.Name], spec.DType));
            w.Complete();
        }
        if (shards.Count > 1) ShardPlanner.WriteIndex(dir, shards);
        var cfg = (JsonObject)config.DeepClone();
        cfg.Remove("quantization_config");
        cfg["torch_dtype"] = dtype == DType.F32 ? "float32" : "bfloat16";
        File.WriteAllText(Path.Combine(dir, "config.json"), cfg.ToJsonString(new System.Text.Json.JsonSerializerOptions { WriteIndented = true }));
    }
}
