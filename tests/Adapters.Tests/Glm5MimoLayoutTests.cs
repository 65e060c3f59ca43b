using System.Text.Json.Nodes;
using Mtp.SafeTensors;
using Mtp.Tests.Shared;

namespace Mtp.Adapters.Tests;

/// <summary>
/// Where GLM-5's and MiMo's tensors land in the training layout (RoundTripTests covers their byte-identical round trip),
/// and that GLM-5's MTP layer index is read from the config, never assumed.
/// </summary>
[TestFixture]
public class Glm5MimoLayoutTests
{
    static HashSet<string> NativeNames(string fixture)
    {
        string tmp = RepoPaths.NewTempDir("fam-" + fixture);
        string nat = Path.Combine(tmp, "native");
        Converter.ToNative(Fx.Dir(fixture), nat, new ConvertOptions());
        HashSet<string> names;
        using (var c = Checkpoint.Open(nat)) names = c.Tensors.Select(t => t.Name).ToHashSet(StringComparer.Ordinal);
        Directory.Delete(tmp, true);
        return names;
    }

    [Test]
    public void Glm5MtpLayerWithItsIndexerMovesToMtpLayers()
    {
        var names = NativeNames("glm-5");
        Assert.That(names, Does.Contain("mtp.layers.0.self_attn.indexer.wk.weight"));
        Assert.That(names, Does.Contain("mtp.layers.0.eh_proj.weight"));
        Assert.That(names, Does.Contain("mtp.layers.0.final_layernorm.weight"));
        Assert.That(names, Does.Contain("model.layers.2.self_attn.indexer.weights_proj.weight"));
        Assert.That(names.Any(n => n.StartsWith("model.layers.3.", StringComparison.Ordinal)), Is.False, "layer L is the MTP depth");
    }

    [TestCase(78)]
    [TestCase(61)]
    public void Glm5MtpLayerIndexIsTheConfigsLayerCount(int layers)
    {
        var config = (JsonObject)JsonNode.Parse(File.ReadAllText(Path.Combine(Fx.Dir("glm-5"), "config.json")))!;
        config["num_hidden_layers"] = layers;
        RuleTable t = Families.BuildTable(Families.Glm5, config);
        var toMtp = t.Bindings.Where(b => b.Native.StartsWith("mtp.layers.0.", StringComparison.Ordinal)).Select(b => b.Hf).ToList();
        Assert.That(toMtp, Does.Contain($"model.layers.{layers}.eh_proj.weight"));
        Assert.That(toMtp, Does.Contain($"model.layers.{layers}.self_attn.indexer.wq_b.weight"));
        Assert.That(toMtp.All(n => n.StartsWith($"model.layers.{layers}.", StringComparison.Ordinal)), Is.True);
        Assert.That(t.Bindings.Any(b => b.Hf == $"model.layers.{layers - 1}.eh_proj.weight"), Is.False);
    }

    [Test]
    public void MimoMtpLayerKeepsItsOwnNamesUnderMtpLayers()
    {
        var names = NativeNames("mimo");
        foreach (string n in new[] { "enorm.weight", "hnorm.weight", "input_proj.weight", "final_layernorm.weight",
                     "self_attn.q_proj.bias", "mlp.down_proj.weight" })
            Assert.That(names, Does.Contain("mtp.layers.0." + n));
        Assert.That(names.Any(n => n.StartsWith("model.mtp_layers.", StringComparison.Ordinal) || n.Contains("token_layernorm", StringComparison.Ordinal)), Is.False);
        Assert.That(names.Any(n => n.Contains("eh_proj", StringComparison.Ordinal)), Is.False, "input_proj's [hidden, embedding] order is not eh_proj's");
    }
}
