using Mtp.Adapters;
using Mtp.SafeTensors;
using Mtp.Tests.Shared;
using TorchSharp;
using static TorchSharp.torch;

namespace Mtp.Model.Tests;

/// <summary>
/// A Hugging Face fixture loaded straight into the model (plan in memory, FP8/FP4 dequantized into the parameters) holds
/// exactly what <c>convert --to native</c> followed by a load gives, in both training dtypes.
/// </summary>
public class HfDirectLoadTests
{
    static readonly string[] Fixtures = { "deepseek-v3", "deepseek-v4-flash", "deepseek-v4-legacy-mtp", "qwen3.5-moe", "qwen3.5-moe-fp8", "glm-4.5", "deepseek-v3.2", "qwen3.6-moe", "qwen3-next", "glm-4.5-fp8", "glm-5" };

    static IEnumerable<TestCaseData> Cases() =>
        from f in Fixtures from d in new[] { "bf16", "f32" } select new TestCaseData(f, d).SetName($"HfLoadEqualsConvertThenLoad({f},{d})");

    [TestCaseSource(nameof(Cases))]
    public void HfLoadEqualsConvertThenLoad(string fixture, string dtype)
    {
        string hf = Path.Combine(RepoPaths.Fixtures, fixture);
        string native = RepoPaths.NewTempDir("hfload");
        var st = CheckpointIO.ParseDType(dtype);
        Converter.ToNative(hf, native, new ConvertOptions { DType = ModelSource.CheckpointDType(st) });
        using var viaDisk = MtpModel.Load(native, CPU, st);
        using var direct = MtpModel.Load(hf, CPU, st);
        var a = viaDisk.StateDict();
        var b = direct.StateDict();
        Assert.That(b.Keys.OrderBy(k => k, StringComparer.Ordinal), Is.EqualTo(a.Keys.OrderBy(k => k, StringComparer.Ordinal)));
        int nonzero = 0;
        foreach (var (name, t) in a)
        {
            Assert.That(b[name].dtype, Is.EqualTo(t.dtype), name);
            Assert.That(Bits(b[name]), Is.EqualTo(Bits(t)), name);
            if (t.count_nonzero().item<long>() > 0) nonzero++;
        }
        Assert.That(nonzero, Is.GreaterThan(a.Count / 2), "the weights were really loaded (not left at their zero initialisation)");
        Assert.That(direct.SourceLineage?["source_tensors"], Is.Not.Null, "an HF load records its source for export");
        Assert.That(direct.SourceConfig?.ToJsonString(), Is.EqualTo(viaDisk.SourceConfig?.ToJsonString()), "the config is the one convert writes");
        Assert.That(direct.CarriedTensors.Select(c => c.Spec.Name), Is.EqualTo(viaDisk.CarriedTensors.Select(c => c.Spec.Name)));
        for (int i = 0; i < direct.CarriedTensors.Count; i++)
            Assert.That(direct.CarriedTensors[i].Data, Is.EqualTo(viaDisk.CarriedTensors[i].Data), direct.CarriedTensors[i].Spec.Name);
    }

    /// <summary>A tensor's raw bytes (dtype-exact, NaN payloads included).</summary>
    static byte[] Bits(Tensor t)
    {
        using var c = t.detach().cpu().contiguous();
        return c.bytes.ToArray();
    }
}
