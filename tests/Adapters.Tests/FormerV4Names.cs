using Mtp.Adapters;
using Mtp.SafeTensors;

namespace Mtp.Tests.Shared;

/// <summary>
/// A DeepSeek-V4 training checkpoint as the earlier version wrote it (before its names became transformers'): each
/// current name is taken back to its HF name by the rule table, then spelled the old way, which was the release's name
/// under <c>model.</c> / <c>mtp.layers.{k}.</c> with only the router, the shared experts, the MTP norm and hc_head renamed.
/// Stated here on its own (not from the former-names table the code reads them with), so a wrong table fails.
/// </summary>
public static class FormerV4Names
{
    /// <summary>
    /// The old name of HF tensor <paramref name="hf"/> of a model with <paramref name="layers"/> main layers (MTP depths
    /// of the legacy layout sit at layer layers+k), or null for names that did not change (experts).
    /// </summary>
    public static string? OldName(string hf, int layers)
    {
        switch (hf)
        {
            case "embed.weight": return "model.embed_tokens.weight";
            case "norm.weight": return "model.norm.weight";
            case "head.weight": return "lm_head.weight";
        }
        if (hf.StartsWith("hc_head_", StringComparison.Ordinal)) return "model.hc_head." + hf["hc_head_".Length..];
        string prefix, rest;
        var parts = hf.Split('.', 3);
        if (parts.Length < 3) return null;
        if (parts[0] == "model" && hf.Split('.', 4) is { Length: 4 } lp && lp[1] == "layers" && int.Parse(lp[2]) >= layers)
        { prefix = $"mtp.layers.{int.Parse(lp[2]) - layers}."; rest = lp[3]; }
        else if (parts[0] == "layers" && int.Parse(parts[1]) >= layers) { prefix = $"mtp.layers.{int.Parse(parts[1]) - layers}."; rest = parts[2]; }
        else if (parts[0] == "layers") { prefix = $"model.layers.{parts[1]}."; rest = parts[2]; }
        else if (parts[0] == "mtp") { prefix = $"mtp.layers.{parts[1]}."; rest = parts[2]; }
        else return null;
        if (rest.StartsWith("ffn.experts.", StringComparison.Ordinal)) return null;
        string old = rest switch
        {
            "ffn.shared_experts.w1.weight" => "mlp.shared_experts.gate_proj.weight",
            "ffn.shared_experts.w3.weight" => "mlp.shared_experts.up_proj.weight",
            "ffn.shared_experts.w2.weight" => "mlp.shared_experts.down_proj.weight",
            "norm.weight" => "final_layernorm.weight",
            _ when rest.StartsWith("hc_head_", StringComparison.Ordinal) => "hc_head." + rest["hc_head_".Length..],
            _ when rest.StartsWith("ffn.gate.", StringComparison.Ordinal) => "mlp.gate." + rest["ffn.gate.".Length..],
            _ => rest,
        };
        return prefix + old;
    }

    /// <summary>
    /// Writes <paramref name="nativeDir"/> (a current V4 training checkpoint) to a new directory with the old names, its
    /// config.json and conversion.json copied; returns the directory and how many names changed.
    /// </summary>
    public static (string Dir, int Renamed) Write(string nativeDir, string tag)
    {
        var (dir, map) = WriteWithMap(nativeDir, tag);
        return (dir, map.Count);
    }

    /// <summary>As <see cref="Write"/>, returning current -> old for every name that changed.</summary>
    public static (string Dir, Dictionary<string, string> OldOf) WriteWithMap(string nativeDir, string tag)
    {
        string dir = RepoPaths.NewTempDir(tag);
        using var c = Checkpoint.Open(nativeDir);
        RuleTable table = Families.BuildTable(Families.DeepSeekV4, c.Config!, null, c.Tensors.Select(t => t.Name).ToList());
        var oldOf = new Dictionary<string, string>(StringComparer.Ordinal);
        int layers = c.Config!["num_hidden_layers"]!.GetValue<int>();
        var list = new List<(TensorSpec, byte[])>();
        foreach (var t in c.Tensors)
        {
            string name = table.ToHfName(t.Name) is string hf && OldName(hf, layers) is string old ? old : t.Name;
            if (name != t.Name) oldOf[t.Name] = name;
            list.Add((new TensorSpec(name, t.Info.DType, t.Info.Shape), t.File.GetBytes(t.Info).ToArray()));
        }
        SafeTensorsWriter.WriteFile(Path.Combine(dir, "model.safetensors"), list);
        foreach (string f in new[] { "config.json", "conversion.json" })
            if (File.Exists(Path.Combine(nativeDir, f))) File.Copy(Path.Combine(nativeDir, f), Path.Combine(dir, f));
        return (dir, oldOf);
    }
}
