using System.Text.Json.Nodes;
using Mtp.SafeTensors;
using Mtp.Tests.Shared;

namespace Mtp.Adapters.Tests;

/// <summary>Families without a fixture: a tiny BF16 checkpoint holding exactly the names the table expects.</summary>
[TestFixture]
public class SyntheticTests
{
    static IEnumerable<TestCaseData> Configs()
    {
        yield return new TestCaseData("qwen3-next", new JsonObject
        {
            ["model_type"] = "qwen3_next", ["num_hidden_layers"] = 4, ["num_experts"] = 2, ["shared_expert_intermediate_size"] = 2,
            ["full_attention_interval"] = 4, ["num_nextn_predict_layers"] = 2,
        }).SetName("Qwen3Next");
        yield return new TestCaseData("qwen3.5-dense", new JsonObject
        {
            ["model_type"] = "qwen3_5", ["tie_word_embeddings"] = true,
            ["text_config"] = new JsonObject { ["model_type"] = "qwen3_5_text", ["num_hidden_layers"] = 2, ["mtp_num_hidden_layers"] = 1, ["layer_types"] = new JsonArray("linear_attention", "full_attention") },
        }).SetName("Qwen35Dense");
    }

    [TestCaseSource(nameof(Configs))]
    public void RoundTrips(string tag, JsonObject config)
    {
        string family = FamilyDetector.Detect(config)!;
        var table = Families.BuildTable(family, config);
        string dir = RepoPaths.NewTempDir("syn-" + tag);
        var tensors = new List<(TensorSpec, byte[])>();
        int seed = 1;
        foreach (var b in table.Bindings)
        {
            if (b.Rule.Optional) continue;
            var names = table.HfNames(b).ToList();
            if (b.Rule.Op == RuleOperation.StackExperts) names = names.Where(n => n.Contains(".experts.") && char.IsDigit(n[n.IndexOf(".experts.") + 9])).ToList();
            foreach (string n in names)
            {
                var data = new byte[8];
                for (int i = 0; i < 8; i += 2) { data[i] = (byte)(seed++ * 37); data[i + 1] = 0x3F; }
                tensors.Add((new TensorSpec(n, DType.BF16, new long[] { 2, 2 }), data));
            }
        }
        SafeTensorsWriter.WriteFile(Path.Combine(dir, "model.safetensors"), tensors);
        File.WriteAllText(Path.Combine(dir, "config.json"), config.ToJsonString());
        string nat = Path.Combine(dir, "n"), back = Path.Combine(dir, "h");
        Converter.ToNative(dir, nat, new ConvertOptions());
        using (var c = Checkpoint.Open(nat))
        {
            Assert.That(c.Contains("mtp.layers.0.eh_proj.weight"), Is.True);
            Assert.That(c.Contains("lm_head.weight"), Is.EqualTo(tag == "qwen3-next"));
            Assert.That(c.Tensors.Any(t => t.Name.StartsWith("model.language_model")), Is.False);
        }
        Converter.ToHf(nat, back, new ConvertOptions { Reference = dir });
        Assert.That(Verifier.Compare(dir, back).Identical, Is.True);
    }
}
