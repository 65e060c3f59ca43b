using System.Text.Json.Nodes;
using Mtp.SafeTensors;
using static TorchSharp.torch;

namespace Mtp.Model.Tests;

public class ModelRegistryTests
{
    [Test]
    public void LoadDispatchesOnModelType()
    {
        string dir = Mtp.Tests.Shared.RepoPaths.NewTempDir("registry");
        RandomCheckpoint.Write(dir, RandomCheckpoint.TinyConfig(1), 1, DType.F32);
        using MtpModel model = MtpModel.Load(dir, CPU, ScalarType.Float32);
        Assert.That(model, Is.InstanceOf<DeepSeekV3Model>());
        Assert.That(model.Family, Is.EqualTo("deepseek-v3"));
        Assert.That(model.MtpDepthCount, Is.EqualTo(1));
        Directory.Delete(dir, true);
    }

    [Test]
    public void UnsupportedModelTypeIsAClearError()
    {
        string dir = Mtp.Tests.Shared.RepoPaths.NewTempDir("registry-bad");
        File.WriteAllText(Path.Combine(dir, "config.json"), new JsonObject { ["model_type"] = "llama" }.ToJsonString());
        var e = Assert.Throws<ModelConfigException>(() => MtpModel.Load(dir, CPU, ScalarType.Float32))!;
        Assert.That(e.Message, Does.Contain("llama").And.Contain("deepseek_v3"));
        Directory.Delete(dir, true);
    }
}
