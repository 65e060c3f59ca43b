using System.Text.RegularExpressions;

namespace Mtp.Adapters;

/// <summary>MTP depths as tensor names show them (for configs and tools that do not state the depth).</summary>
public static partial class MtpNames
{
    [GeneratedRegex(@"^mtp\.layers\.(\d+)\.")] private static partial Regex LayersK();
    [GeneratedRegex(@"^model\.mtp_layers\.(\d+)\.")] private static partial Regex MimoLayersK();
    [GeneratedRegex(@"^model\.mtp\.layers\.(\d+)\.")] private static partial Regex MimoV2LayersK();

    static bool TryDepth(Regex r, string name, out int k)
    {
        Match m = r.Match(name);
        k = 0;
        return m.Success && int.TryParse(m.Groups[1].Value, out k);
    }

    // The largest depth any name shows, plus one (0 when none).
    static int DepthCount(IEnumerable<string> names, Func<string, int?> depth) =>
        names.Select(depth).Aggregate(0, (d, k) => k is int x ? Math.Max(d, x + 1) : d);

    /// <summary>The depth k of a <c>model.mtp_layers.{k}.*</c> name (MiMo's HF layout).</summary>
    public static bool TryMimoDepth(string name, out int k) => TryDepth(MimoLayersK(), name, out k);

    /// <summary>The depth k of a <c>model.mtp.layers.{k}.*</c> name (MiMo-V2-Flash's HF layout).</summary>
    public static bool TryMimoV2Depth(string name, out int k) => TryDepth(MimoV2LayersK(), name, out k);

    /// <summary>The depth k of a <c>mtp.layers.{k}.*</c> name (the training layout, and Qwen's HF layout).</summary>
    public static bool TryLayerDepth(string name, out int k) => TryDepth(LayersK(), name, out k);

    /// <summary>How many depths the <c>mtp.layers.{k}.*</c> names hold: the largest k plus one (0 when none).</summary>
    public static int LayerDepthCount(IEnumerable<string> names) =>
        DepthCount(names, n => TryLayerDepth(n, out int k) ? k : null);

    /// <summary>How many depths <c>model.mtp.layers.{k}.*</c> (HF) or <c>mtp.layers.{k}.*</c> (training) names hold.</summary>
    public static int MimoV2DepthCount(IEnumerable<string> names) =>
        DepthCount(names, n => TryMimoV2Depth(n, out int k) || TryLayerDepth(n, out k) ? k : null);
}
