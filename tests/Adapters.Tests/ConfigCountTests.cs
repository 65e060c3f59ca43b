using System.Text.Json.Nodes;

namespace Mtp.Adapters.Tests;

/// <summary>
/// Counts read from config.json (layers, MTP depth, experts) are malformed input when they are not non-negative integers:
/// fuzz seed 27182818 turned num_nextn_predict_layers into -1 and convert --to hf ended in ArgumentOutOfRangeException.
/// </summary>
public class ConfigCountTests
{
    [TestCase("deepseek-v3", "num_nextn_predict_layers", "-1", "must not be negative")]
    [TestCase("deepseek-v3", "num_nextn_predict_layers", "1e30", "must be an integer")]
    [TestCase("deepseek-v3", "num_nextn_predict_layers", "99999999999", "must be an integer")]
    [TestCase("deepseek-v3", "num_nextn_predict_layers", "0.5", "must be an integer")]
    [TestCase("deepseek-v3", "num_nextn_predict_layers", "\"1\"", "must be an integer")]
    [TestCase("deepseek-v3", "n_routed_experts", "-1", "must not be negative")]
    [TestCase("deepseek-v3", "num_hidden_layers", "99999999999", "must be an integer")]
    [TestCase("deepseek-v4-flash", "num_nextn_predict_layers", "-1", "must not be negative")]
    [TestCase("qwen3.5-moe", "mtp_num_hidden_layers", "-1", "must not be negative")]
    [TestCase("qwen3.5-moe", "mlp_only_layers", "[\"a\"]", "must hold integers")]
    [TestCase("qwen3.5-moe", "mlp_only_layers", "3", "must be an array")]
    public void ABadCountIsMalformedAndNamesTheKey(string fixture, string key, string value, string what)
    {
        var config = Fx.Config(Fx.Dir(fixture));
        var target = config["text_config"] as JsonObject ?? config;
        target[key] = JsonNode.Parse(value);
        string family = FamilyDetector.Detect(config)!;
        var e = Assert.Throws<AdapterException>(() => Families.BuildTable(family, config))!;
        Assert.That(e.Kind, Is.EqualTo(AdapterErrorKind.Malformed));
        Assert.That(e.Message, Does.Contain("config.json").And.Contain($"'{key}'").And.Contain(what));
    }

    [Test]
    public void NullMeansAbsent()
    {
        var config = Fx.Config(Fx.Dir("deepseek-v3"));
        config["n_routed_experts"] = null;
        Assert.That(Families.ReadFacts(Families.DeepSeekV3, config).NumExperts, Is.EqualTo(0));
    }
}
