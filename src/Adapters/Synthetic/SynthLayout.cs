using System.Text.Json.Nodes;
using System.Text.RegularExpressions;

namespace Mtp.Adapters.Synthetic;

/// <summary>
/// A synthetic model's tensor list, generated from its family's rule table for the model's config.json: every
/// required binding's HF names (stacked experts per expert or fused, as the family writes them), tied copies as
/// copies of their main tensor, scales as the family's quantization scheme names them, and the family's carried
/// tensors. The layout is thus described once, by the table the converter reads.
/// </summary>
internal static partial class SynthLayout
{
    // The layer prefix of a name inside a decoder layer or MTP depth: model.layers.3., layers.3., model.language_model.layers.3.,
    // mtp.layers.0., mtp.0.
    [GeneratedRegex(@"^[a-z_.]*?(?:layers|mtp)\.\d+\.")] private static partial Regex LayerPrefix();
    [GeneratedRegex(@"\.experts\.\d+\.")] private static partial Regex ExpertIndex();

    /// <summary><paramref name="hfName"/> without its layer prefix and with the expert index as <c>{e}</c> (what storage functions match).</summary>
    public static string LocalName(string hfName) =>
        ExpertIndex().Replace(LayerPrefix().Replace(hfName, "", 1), ".experts.{e}.", 1);

    /// <summary>The plan of <paramref name="model"/>, whose config.json is <paramref name="config"/>.</summary>
    /// <exception cref="InvalidOperationException">A rule names a tensor the family's storage does not know, a carried tensor matches no
    /// carry-through rule, a tied copy's main tensor is not written, or two tensors get one name.</exception>
    public static SynthPlan Plan(SynthModel model, JsonObject config)
    {
        // No tensor names are passed: the table then takes the layout synth writes (DeepSeek-V4: MTP under mtp.{k}).
        RuleTable table = FamilyRegistry.Module(model.Family)!.BuildTable(config);
        var all = new List<SynthTensor>();
        var byName = new Dictionary<string, SynthTensor>(StringComparer.Ordinal);
        void Add(SynthTensor t)
        {
            if (!byName.TryAdd(t.Name, t)) throw new InvalidOperationException($"synth {model.Family}: tensor '{t.Name}' is written twice");
            all.Add(t);
        }

        foreach (var (name, storage) in model.Carried())
        {
            if (!table.Rules.Any(r => r.Op == RuleOperation.CarryThrough && r.Hf.TryMatch(name, out _)))
                throw new InvalidOperationException($"synth {model.Family}: carried tensor '{name}' matches no carry-through rule");
            foreach (SynthTensor t in storage.Tensors(name, model.Scheme)) Add(t);
        }
        int carried = all.Count;

        foreach (Binding b in table.Bindings)
        {
            if (b.Rule.Optional) continue; // a release may lack these; synth writes what every release holds
            LayerContext layer = b.Context(table.Facts.NumHiddenLayers);
            if (b.Rule.TiedTo is Rule main)
            {
                // released checkpoints store the copy byte for byte: same dtype, shape and data as the main tensor
                string of = main.Hf.Text;
                if (!byName.TryGetValue(of, out SynthTensor? m))
                    throw new InvalidOperationException($"synth {model.Family}: tied copy '{b.Hf}' of '{of}', which is not written");
                Add(m with { Name = b.Hf, SameDataAs = of });
                continue;
            }
            foreach (string name in NamesOf(model, table, b, layer))
                foreach (SynthTensor t in model.TensorsOf(name, layer)) Add(t);
        }

        var text = all.GetRange(carried, all.Count - carried);
        return new SynthPlan(model.Family, all, model.Finish(config, text));
    }

    /// <summary>The HF names <paramref name="b"/> is written as: stacked experts in the family's layout for the layer, others as the table names them.</summary>
    static IEnumerable<string> NamesOf(SynthModel model, RuleTable table, Binding b, LayerContext layer)
    {
        IEnumerable<string> names = table.HfNames(b);
        if (b.Rule.Experts is not ExpertNames x) return names;
        string? gateUp = x.FusedGateUp is null ? null : b.Hf + "." + x.FusedGateUp, down = x.FusedDown is null ? null : b.Hf + "." + x.FusedDown;
        if (!model.FusedExperts(layer)) return names.Where(n => n != gateUp && n != down);
        if (gateUp is null || down is null) throw new InvalidOperationException($"synth {model.Family}: '{b.Hf}' has no fused expert layout");
        return new[] { gateUp, down };
    }
}
