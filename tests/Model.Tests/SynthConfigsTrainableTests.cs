using Mtp.Adapters.Synthetic;

namespace Mtp.Model.Tests;

/// <summary>What <c>mtp synth</c> writes must load into the family's model: its routing groups keep enough experts.</summary>
public class SynthConfigsTrainableTests
{
    [Test]
    public void EveryDeepSeekV3ExpertCountGivesARoutableConfig()
    {
        var refused = new List<string>();
        foreach (int e in Enumerable.Range(1, 64))
        {
            var plan = SynthSizing.Resolve("deepseek-v3", fp8: true, null, new SynthOverrides(Experts: e)).Build();
            var config = (System.Text.Json.Nodes.JsonObject)plan.Config.DeepClone();
            config.Remove("quantization_config"); // as the training layout's config (the model refuses a quantized one)
            try { DeepSeekV3Config.FromJson(config); }
            catch (ModelConfigException x) { refused.Add($"{e} experts: {x.Message}"); }
        }
        Assert.That(refused, Is.Empty);
    }
}
