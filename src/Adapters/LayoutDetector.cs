using System.Text.Json;
using System.Text.Json.Nodes;

namespace Mtp.Adapters;

/// <summary>Which side of a conversion a checkpoint is on.</summary>
public enum CheckpointLayout
{
    /// <summary>Not decided (no known family, or no telling names).</summary>
    Unknown,
    /// <summary>The Hugging Face layout of its family.</summary>
    HuggingFace,
    /// <summary>The training layout (<c>mtp convert --to native</c>).</summary>
    Training,
}

/// <summary>A checkpoint's layout and what showed it, worded for a message.</summary>
/// <param name="Layout">The layout.</param>
/// <param name="Evidence">E.g. "its conversion.json records mtp convert --to native".</param>
public sealed record LayoutFinding(CheckpointLayout Layout, string Evidence);

/// <summary>
/// Tells a Hugging Face checkpoint from a training-layout one before names are matched, so that a checkpoint given to
/// the wrong direction (or to <c>train</c>) is reported as that, in one line, instead of as dozens of missing tensors.
/// </summary>
public static class LayoutDetector
{
    /// <summary>
    /// The layout of the checkpoint in <paramref name="dir"/>: from the direction its conversion.json records, else from
    /// the names only one side of the family's rule table has (scales and HF-only placements against training names).
    /// </summary>
    public static LayoutFinding Detect(string dir, JsonObject? config, IReadOnlyCollection<string> names)
    {
        switch (RecordedDirection(dir))
        {
            case "to-native": return new(CheckpointLayout.Training, $"its {Converter.ReportFileName} records mtp convert --to native");
            case "to-hf": return new(CheckpointLayout.HuggingFace, $"its {Converter.ReportFileName} records mtp convert --to hf");
        }
        if (config is null || FamilyDetector.Detect(config) is not string family) return new(CheckpointLayout.Unknown, "");
        RuleTable table;
        try { table = Families.BuildTable(family, config, names, names); }
        catch (AdapterException) { return new(CheckpointLayout.Unknown, ""); }
        // Expert groups are left out: some families store them alike on both sides.
        var hf = new HashSet<string>(StringComparer.Ordinal);
        var native = new HashSet<string>(StringComparer.Ordinal);
        foreach (Binding b in table.Bindings)
        {
            if (b.Rule.Op == RuleOperation.StackExperts) continue;
            hf.Add(b.Hf);
            hf.Add(table.ScaleNameOf(b.Hf)); // a scale name only HF checkpoints can hold (unquantized rules' never occur)
            native.Add(b.Native);
        }
        int hfOnly = 0, nativeOnly = 0;
        string? hfExample = null, nativeExample = null;
        foreach (string n in names)
        {
            bool inHf = hf.Contains(n), inNative = native.Contains(n);
            if (inHf && !inNative) { hfOnly++; hfExample ??= n; }
            else if (inNative && !inHf) { nativeOnly++; nativeExample ??= n; }
        }
        if (hfOnly > nativeOnly) return new(CheckpointLayout.HuggingFace, $"{hfOnly} tensor names of the {family} Hugging Face layout, such as '{hfExample}'");
        if (nativeOnly > hfOnly) return new(CheckpointLayout.Training, $"{nativeOnly} tensor names of the training layout, such as '{nativeExample}'");
        return new(CheckpointLayout.Unknown, "");
    }

    /// <summary>The direction in <paramref name="dir"/>'s conversion.json, or null (none, or unreadable: then names decide).</summary>
    public static string? RecordedDirection(string dir)
    {
        string p = Path.Combine(Directory.Exists(dir) ? dir : Path.GetDirectoryName(Path.GetFullPath(dir))!, Converter.ReportFileName);
        try
        {
            if (!File.Exists(p) || new FileInfo(p).Length > 256L << 20) return null;
            // A token scan for the one top-level field: the report of a 188,000-tensor conversion is 44 MB, too much to
            // build a tree of for a string (the writer puts "direction" second, so the scan stops at once).
            var r = new System.Text.Json.Utf8JsonReader(File.ReadAllBytes(p), new JsonReaderOptions { CommentHandling = JsonCommentHandling.Skip });
            if (!r.Read() || r.TokenType != JsonTokenType.StartObject) return null;
            while (r.Read() && r.TokenType == JsonTokenType.PropertyName)
            {
                bool wanted = r.ValueTextEquals("direction");
                if (!r.Read()) return null;
                if (wanted) return r.TokenType == JsonTokenType.String ? r.GetString() : null;
                r.Skip();
            }
            return null;
        }
        catch (Exception e) when (e is JsonException or IOException or UnauthorizedAccessException or InvalidOperationException) { return null; }
    }
}
