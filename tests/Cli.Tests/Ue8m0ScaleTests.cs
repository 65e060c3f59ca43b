using System.Runtime.InteropServices;
using System.Text.Json.Nodes;
using Mtp.Adapters;
using Mtp.SafeTensors;
using Mtp.Tests.Shared;

namespace Mtp.Cli.Tests;

/// <summary>
/// <c>scale_fmt: ue8m0</c> in a DeepSeek-V3-style quantization_config: F32 scales that are not powers of two are refused on
/// import, an export produces power-of-two F32 scales, and the setting is part of a split conversion's plan hash.
/// </summary>
public class Ue8m0ScaleTests
{
    static string CopyDir(string from, string to)
    {
        Directory.CreateDirectory(to);
        foreach (string f in Directory.GetFiles(from)) File.Copy(f, Path.Combine(to, Path.GetFileName(f)));
        return to;
    }

    static void SetScaleFmt(string configPath, string? fmt, string key = "quantization_config")
    {
        var c = (JsonObject)JsonNode.Parse(File.ReadAllText(configPath))!;
        var q = (JsonObject)c[key]!;
        if (fmt == null) q.Remove("scale_fmt"); else q["scale_fmt"] = fmt;
        File.WriteAllText(configPath, c.ToJsonString());
    }

    static bool PowerOfTwo(float f) => f > 0 && float.IsFinite(f) && (BitConverter.SingleToUInt32Bits(f) & 0x7FFFFF) == 0;

    [Test]
    public void ImportRefusesF32ScalesThatAreNotPowersOfTwo()
    {
        string fx = Path.Combine(RepoPaths.Fixtures, "deepseek-v3");
        string root = RepoPaths.NewTempDir("ue8m0-import");
        string hf = CopyDir(fx, Path.Combine(root, "hf"));
        SetScaleFmt(Path.Combine(hf, "config.json"), "ue8m0");
        var e = Assert.Throws<AdapterException>(() => Converter.ToNative(hf, Path.Combine(root, "native"), new ConvertOptions()))!;
        Assert.That(e.Kind, Is.EqualTo(AdapterErrorKind.Malformed));
        Assert.That(e.Message, Does.Contain("ue8m0").And.Contain("_scale_inv").And.Contain("not powers of two"));
        Assert.That(e.Message, Does.Not.Contain("\n"));
    }

    [Test]
    public void ExportWritesPowerOfTwoScalesAndTheSettingIsPartOfThePlanHash()
    {
        string fx = Path.Combine(RepoPaths.Fixtures, "deepseek-v3");
        string root = RepoPaths.NewTempDir("ue8m0-export");
        string native = Path.Combine(root, "native");
        Converter.ToNative(fx, native, new ConvertOptions());
        // As if the source had said ue8m0: the export restores the recorded quantization_config.
        string report = Path.Combine(native, Converter.ReportFileName);
        SetScaleFmt(report, "ue8m0", "source_quantization_config");
        string hf = Path.Combine(root, "hf");
        Converter.ToHf(native, hf, new ConvertOptions());

        int scales = 0;
        using (var c = Checkpoint.Open(hf))
            foreach (var t in c.Tensors.Where(t => t.Name.EndsWith("_scale_inv")))
            {
                Assert.That(t.Info.DType, Is.EqualTo(DType.F32), t.Name);
                var f = MemoryMarshal.Cast<byte, float>(t.File.GetBytes(t.Info));
                for (int i = 0; i < f.Length; i++) Assert.That(PowerOfTwo(f[i]), Is.True, $"{t.Name}[{i}] = {f[i]:R}");
                scales++;
            }
        Assert.That(scales, Is.GreaterThan(0));
        Assert.That(Fx(hf)["quantization_config"]!["scale_fmt"]!.GetValue<string>(), Is.EqualTo("ue8m0"));

        // Its output imports again (the check passes) ...
        Converter.ToNative(hf, Path.Combine(root, "native-2"), new ConvertOptions());
        // ... and two parts planned with and without scale_fmt do not merge.
        string plain = CopyDir(hf, Path.Combine(root, "hf-plain"));
        SetScaleFmt(Path.Combine(plain, "config.json"), null);
        long total;
        using (var c = Checkpoint.Open(hf)) total = c.TotalTensorBytes;
        var o = new ConvertOptions { MaxShardBytes = Math.Max(1, total / 3) };
        string parts = Path.Combine(root, "parts");
        Converter.ToNative(hf, parts, o with { Part = (1, 2) });
        Converter.ToNative(plain, parts, o with { Part = (2, 2) });
        var e = Assert.Throws<AdapterException>(() => Converter.MergeParts(parts))!;
        Assert.That(e.Message, Does.Contain("different plans"));
    }

    static JsonObject Fx(string dir) => (JsonObject)JsonNode.Parse(File.ReadAllText(Path.Combine(dir, "config.json")))!;
}
