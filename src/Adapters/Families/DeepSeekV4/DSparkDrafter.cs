using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using Mtp.SafeTensors;

namespace Mtp.Adapters;

/// <summary>
/// Recognises a DeepSeek-V4 checkpoint that carries a DSpark speculative drafter under <c>mtp.*</c> instead of (or
/// beside) V4's MTP depths <c>mtp.{k}.*</c>. DSpark (deepseek-ai/DeepSpec) is a multi-block drafter: a projection
/// <c>fc</c> of several target layers' hidden states, <c>hidden_norm</c>, a stack of decoder <c>layers</c>, a final
/// <c>norm</c>, a Markov head and a confidence head. Its blocks are not MTP depths, so Mtp refuses the checkpoint
/// rather than load part of it as one (the half-load issue 18 describes). Sources: src/Adapters/README.md, "DSpark".
/// </summary>
public static partial class DSparkDrafter
{
    /// <summary>Config keys only a DSpark drafter's config has (DeepSpec's <c>Qwen3DSparkModel</c> requires them).</summary>
    static readonly string[] ConfigKeys = { "markov_rank", "num_anchors", "target_layer_ids", "enable_confidence_head" };

    /// <summary>Parts of DeepSpec's drafter, as they would appear under <c>mtp.</c>.</summary>
    [GeneratedRegex(@"^mtp\.(?:.*\.)?(?:markov_head|confidence_head|hidden_norm|fc|layers)\.")] private static partial Regex DrafterPart();
    [GeneratedRegex(@"^mtp\.(\d+)\.")] private static partial Regex Depth();

    /// <summary>
    /// The first tensor (in checkpoint order) that marks a DSpark drafter, or the config key that names one (tensor
    /// null), or null when the checkpoint has neither. A V4 MTP depth past the config's <c>num_nextn_predict_layers</c>
    /// counts too: a drafter's blocks numbered like depths are still not depths.
    /// </summary>
    public static (string What, string? Tensor)? Find(JsonObject config, IEnumerable<string> names)
    {
        JsonObject tc = ConfigValues.TextConfig(config);
        int depth = ConfigValues.Count(tc, "num_nextn_predict_layers") ?? 0;
        var list = names as IReadOnlyCollection<string> ?? names.ToList();
        // The release names its main model without a prefix (embed, layers.{i}, head); the training layout puts it under
        // model. and its MTP depths under mtp.layers.{k}, which must not read as a drafter's layers.
        if (list.Any(n => n.StartsWith("model.", StringComparison.Ordinal))) return null;
        foreach (string n in list)
        {
            if (DrafterPart().IsMatch(n)) return ("a DSpark drafter part", n);
            Match m = Depth().Match(n);
            if (m.Success && int.TryParse(m.Groups[1].Value, out int k) && k >= depth)
                return ($"block {k} of a multi-block drafter (config num_nextn_predict_layers is {depth})", n);
        }
        foreach (JsonObject o in new[] { config, tc }.Distinct())
            foreach (var (key, _) in o)
                if (ConfigKeys.Contains(key) || key.Contains("dspark", StringComparison.OrdinalIgnoreCase))
                    return ($"config.json key '{key}'", null);
        return null;
    }

    /// <summary>Throws the one-line refusal when <paramref name="ck"/> (family <paramref name="family"/>) carries a DSpark drafter.</summary>
    /// <exception cref="AdapterException">Always names the file and the tensor (or the config key).</exception>
    public static void Refuse(string family, Checkpoint ck, JsonObject config)
    {
        if (family != Families.DeepSeekV4) return;
        if (Find(config, ck.Tensors.Select(t => t.Name)) is not var (what, tensor)) return;
        throw new AdapterException(AdapterErrorKind.Inconsistent, Message(ck, what, tensor));
    }

    /// <summary>The refusal's text, for convert's error and inspect's problem list.</summary>
    public static string Message(Checkpoint ck, string what, string? tensor)
    {
        string where = tensor is null ? Path.Combine(ck.Directory, "config.json") : $"{ck.Get(tensor).File.Path}: tensor '{tensor}'";
        return $"{where}: {what}: this DeepSeek-V4 checkpoint carries a DSpark speculative drafter under mtp.*, whose blocks are not MTP depths; " +
               "Mtp does not convert DSpark drafters (remove the drafter's tensors to convert the main model and its MTP)";
    }
}
