using System.Text.Json.Nodes;
using Mtp.Adapters;
using Mtp.Tests.Shared;
using TorchSharp;
using static TorchSharp.torch;

namespace Mtp.Model.Tests;

static class DeepSeekV4Util
{
    static readonly Dictionary<string, string> Cache = new();

    /// <summary>The fixture converted to the training layout (cached per process; do not modify).</summary>
    public static string Native(string fixture = "deepseek-v4-flash")
    {
        lock (Cache)
        {
            if (Cache.TryGetValue(fixture, out var d)) return d;
            d = Path.Combine(RepoPaths.NewTempDir("v4-" + fixture), "native");
            Converter.ToNative(Path.Combine(RepoPaths.Fixtures, fixture), d, new ConvertOptions());
            Cache[fixture] = d;
            return d;
        }
    }

    public static JsonObject Config(string dir) => (JsonObject)JsonNode.Parse(File.ReadAllText(Path.Combine(dir, "config.json")))!;

    public static Trainer NewTrainer(TrainerOptions o, ulong dataSeed = 7, string? dir = null)
    {
        dir ??= Native();
        var model = DeepSeekV4Model.Load(dir, CPU, ScalarType.Float32);
        return new Trainer(model, new SyntheticTokenSource(256, dataSeed), o, Config(dir));
    }
}
