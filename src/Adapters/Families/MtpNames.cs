using System.Text.RegularExpressions;

namespace Mtp.Adapters;

/// <summary>MTP depths as tensor names show them (for configs and tools that do not state the depth).</summary>
public static partial class MtpNames
{
    [GeneratedRegex(@"^mtp\.layers\.(\d+)\.")] private static partial Regex LayersK();
    [GeneratedRegex(@"^model\.mtp_layers\.(\d+)\.")] private static partial Regex MimoLayersK();
    [GeneratedRegex(@"^model\.mtp\.layers\.(\d+)\.")] private static partial Regex MimoV2LayersK();

    /// <summary>The depth k of a <c>model.mtp.layers.{k}.*</c> name (MiMo-V2-Flash's HF layout).</summary>
    public static bool TryMimoV2Depth(string name, out int k)
    {
        Match m = MimoV2LayersK().Match(name);
        k = 0;
        return m.Success && int.TryParse(m.Groups[1].Value, out k);
    }

    /// <summary>How many depths <c>model.mtp.layers.{k}.*</c> (HF) or <c>mtp.layers.{k}.*</c> (training) names hold.</summary>
    public static int MimoV2DepthCount(IEnumerable<string> names)
    {
        int d = 0;
        foreach (string n in names)
            if (TryMimoV2Depth(n, out int k) || TryLayerDepth(n, out k)) d = Math.Max(d, k + 1);
        return d;
    }

    /// <summary>The depth k of a <c>model.mtp_layers.{k}.*</c> name (MiMo's HF layout).</summary>
    public static bool TryMimoDepth(string name, out int k)
    {
        Match m = MimoLayersK().Match(name);
        k = 0;
        return m.Success && int.TryParse(m.Groups[1].Value, out k);
    }

    /// <summary>The depth k of a <c>mtp.layers.{k}.*</c> name (the training layout, and Qwen's HF layout).</summary>
    public static bool TryLayerDepth(string name, out int k)
    {
        Match m = LayersK().Match(name);
        k = 0;
        return m.Success && int.TryParse(m.Groups[1].Value, out k);
    }

    /// <summary>How many depths the <c>mtp.layers.{k}.*</c> names hold: the largest k plus one (0 when none).</summary>
    public static int LayerDepthCount(IEnumerable<string> names)
    {
        int d = 0;
        foreach (string n in names)
            if (TryLayerDepth(n, out int k)) d = Math.Max(d, k + 1);
        return d;
    }
}
