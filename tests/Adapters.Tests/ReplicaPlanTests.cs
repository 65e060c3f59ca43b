using System.Diagnostics;
using System.Text.Json.Nodes;
using Mtp.Adapters.Synthetic;
using Mtp.SafeTensors;
using Mtp.Tests.Shared;

namespace Mtp.Adapters.Tests;

/// <summary>
/// The conversion planner on the tensor lists of released checkpoints: header-only replicas (every data byte a hole) of
/// DeepSeek-V3, V4-Flash and Qwen3.5-397B-A17B-FP8, made from the released config.json files, are planned to the training
/// layout; the plan must claim every tensor (no missing or unknown name) and the run is stopped before any output.
/// </summary>
public class ReplicaPlanTests
{
    sealed class PlanDone : Exception { }

    [TestCase("deepseek-v3")]
    [TestCase("deepseek-v4-flash")]
    [TestCase("qwen3.5-397b-a17b-fp8")]
    public void ReleasedTensorListsArePlannedToNative(string name)
    {
        string work = RepoPaths.NewTempDir("replica-plan-" + name);
        string cfgPath = Path.Combine(RepoPaths.Fixtures, "real-configs", name + ".json");
        byte[] json = File.ReadAllBytes(cfgPath);
        SynthPlan plan = SynthLike.FromConfig((JsonObject)JsonNode.Parse(json)!, cfgPath).Build();
        var shards = ReplicaWriter.Layout(plan, null, null, 5_000_000_000, out var skipped);
        string hf = Path.Combine(work, "hf");
        ReplicaWriter.WriteCheckpoint(plan, shards, json, hf, 0, ReplicaData.HeadersOnly, skipped);

        var log = new List<string>();
        long planned = -1;
        var sw = Stopwatch.StartNew();
        var progress = new ConvertProgress { Log = log.Add, Started = total => { planned = total; throw new PlanDone(); } };
        Assert.Throws<PlanDone>(() => Converter.ToNative(hf, Path.Combine(work, "native"), new ConvertOptions(), progress));
        TestContext.Out.WriteLine($"{name}: {plan.Tensors.Count:N0} tensors planned in {sw.Elapsed.TotalSeconds:F1} s: {string.Join(" | ", log)}");
        Assert.That(planned, Is.GreaterThan(plan.TotalBytes / 2), "the plan writes the whole model (BF16 is at least half the FP8/FP4 bytes)");
        Assert.That(log, Has.Some.Contain("0 carried unknown"));
        Assert.That(Directory.Exists(Path.Combine(work, "native")), Is.False, "planning writes nothing");
        if (name == "deepseek-v3") // its MTP layer's embedding and head copies: 4 x 1.85 GB of holes, equal without reading
        {
            string tied = log.Single(l => l.StartsWith("tied copies: 2 compared", StringComparison.Ordinal));
            long read = long.Parse(System.Text.RegularExpressions.Regex.Match(tied, @"([\d,]+) bytes read").Groups[1].Value.Replace(",", ""));
            Assert.That(read, Is.LessThan(64L << 20), "only the chunks that hold data (beside the header) are read: " + tied);
        }
    }
}
