using Mtp.Adapters;
using Mtp.Model.Qwen;
using Mtp.Tests.Shared;
using static TorchSharp.torch;

namespace Mtp.Model.Tests;

static class QwenTestUtil
{
    static readonly Dictionary<string, string> Cache = new();

    /// <summary>A cached training-layout conversion of a fixture (do not modify it).</summary>
    public static string Native(string fixture)
    {
        lock (Cache)
        {
            if (Cache.TryGetValue(fixture, out var d)) return d;
            d = Path.Combine(RepoPaths.NewTempDir("qwen-native"), "out");
            Converter.ToNative(Path.Combine(RepoPaths.Fixtures, fixture), d, new ConvertOptions());
            Cache[fixture] = d;
            return d;
        }
    }

    public static QwenModel Load(string fixture, DeltaRuleMode mode = DeltaRuleMode.Chunked)
    {
        var m = QwenModel.Load(Native(fixture), CPU, ScalarType.Float32);
        m.DeltaRuleMode = mode;
        return m;
    }
}
