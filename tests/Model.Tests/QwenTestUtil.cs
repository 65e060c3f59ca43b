using Mtp.Adapters;
using Mtp.Model.Qwen;
using Mtp.Tests.Shared;
using static TorchSharp.torch;

namespace Mtp.Model.Tests;

static class QwenTestUtil
{
    /// <summary>A cached training-layout conversion of a fixture (do not modify it).</summary>
    public static string Native(string fixture) => TestUtil.Native(fixture);

    public static QwenModel Load(string fixture, DeltaRuleMode mode = DeltaRuleMode.Chunked)
    {
        var m = QwenModel.Load(Native(fixture), CPU, ScalarType.Float32);
        m.DeltaRuleMode = mode;
        return m;
    }
}
