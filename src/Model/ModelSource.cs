using System.Text.Json.Nodes;
using Mtp.Adapters;
using Mtp.SafeTensors;
using static TorchSharp.torch;

namespace Mtp.Model;

/// <summary>
/// Opens what a model loads from: a training-layout checkpoint as it is, or a Hugging Face checkpoint through its
/// in-memory conversion (<see cref="NativeView"/>: the plan of <c>convert --to native</c> in the model's dtype, dequantized
/// chunk by chunk into the parameters, no intermediate files).
/// </summary>
internal static class ModelSource
{
    /// <summary>The checkpoint dtype a model dtype loads from (what <c>convert --dtype</c> would write).</summary>
    public static DType CheckpointDType(ScalarType dtype) => dtype == ScalarType.Float32 ? DType.F32 : DType.BF16;

    /// <summary>
    /// Opens <paramref name="dir"/> for a model in <paramref name="dtype"/>: the training layout directly, a Hugging Face
    /// checkpoint (told apart by <see cref="LayoutDetector"/>) through a <see cref="NativeView"/> in that dtype. A training
    /// checkpoint with an earlier version's names is read under the current ones (<see cref="FormerTrainingNames"/>).
    /// </summary>
    /// <exception cref="AdapterException">An HF checkpoint that cannot be converted (missing or unknown tensors, malformed).</exception>
    /// <exception cref="SafeTensorsException">A malformed safetensors file or index.</exception>
    public static ITensorSource Open(string dir, ScalarType dtype)
    {
        var ckpt = Checkpoint.Open(dir);
        bool hf;
        try
        {
            hf = ckpt.Config is { } cfg && LayoutDetector.Detect(ckpt.Directory, cfg, ckpt.Tensors.Select(t => t.Name).ToList()).Layout == CheckpointLayout.HuggingFace;
            if (!hf) ckpt = FormerTrainingNames.Upgrade(ckpt); // takes the shards over
        }
        catch
        {
            ckpt.Dispose();
            throw;
        }
        return hf ? NativeView.Open(ckpt, new ConvertOptions { DType = CheckpointDType(dtype) }) : new CheckpointSource(ckpt);
    }

    /// <summary>The source's config.json, or a <see cref="ModelConfigException"/> naming the file.</summary>
    public static JsonObject ConfigOf(ITensorSource src) =>
        src.Config ?? throw new ModelConfigException($"{Path.Combine(src.Directory, "config.json")}: no config.json");

    /// <summary>
    /// Fills a freshly built <paramref name="model"/> from <paramref name="src"/> (<see cref="CheckpointIO.Fill"/>) and
    /// records where it came from; disposes the model if that fails.
    /// </summary>
    public static T FillOrDispose<T>(T model, ITensorSource src) where T : MtpModel
    {
        try
        {
            CheckpointIO.Fill(model, src);
            return model;
        }
        catch
        {
            model.Dispose();
            throw;
        }
    }
}
