using Mtp.SafeTensors;

namespace Mtp.Adapters;

/// <summary>
/// The files of a checkpoint folder that are not its weights: tokenizer files, generation_config.json, README, LICENSE,
/// modelling code (*.py) and sub-folders (e.g. DeepSeek's inference/ or figures/). Convert, merge and train carry them
/// to their output so a converted or trained checkpoint stays usable.
/// </summary>
public static class AuxiliaryFiles
{
    /// <summary>Top-level files every writer produces itself.</summary>
    static readonly HashSet<string> WrittenByMtp = new(StringComparer.Ordinal) { "config.json", ShardIndex.FileName, Converter.ReportFileName };

    /// <summary>
    /// Sub-folders that are never auxiliary: <c>training_state</c> (the optimizer state of <c>mtp train --out</c>, twice the
    /// model's size and meaningless to an exported checkpoint).
    /// </summary>
    static readonly HashSet<string> NotCopiedFolders = new(StringComparer.Ordinal) { "training_state" };

    /// <summary>
    /// Copies the auxiliary files of <paramref name="fromDir"/> into <paramref name="toDir"/>, sub-folders included, keeping
    /// files already there. Left out at every depth: weights (<c>*.safetensors</c>, which are the source's format, not the
    /// output's), temporaries of interrupted writes (<c>.partial-</c>), hidden folders (<c>.git</c>, <c>.cache</c>,
    /// <c>.mtp-parts</c>), folder links (they may loop), <c>training_state/</c>, and the folder being written or any folder
    /// holding it (an output inside its input); at the top level also config.json, the index and conversion.json.
    /// </summary>
    /// <param name="fromDir">The source checkpoint folder (nothing is done when it is not a folder).</param>
    /// <param name="toDir">The folder being written.</param>
    /// <param name="finalDir">Where <paramref name="toDir"/> will be renamed to, if elsewhere: never copied into itself either.</param>
    public static void Copy(string fromDir, string toDir, string? finalDir = null)
    {
        if (!Directory.Exists(fromDir)) return;
        var outputs = new[] { toDir, finalDir }.Where(d => d != null).Select(d => Path.GetFullPath(d!).TrimEnd('/')).ToList();
        CopyLevel(Path.GetFullPath(fromDir), Path.GetFullPath(toDir), outputs, top: true);
    }

    static void CopyLevel(string from, string to, List<string> outputs, bool top)
    {
        foreach (string f in Directory.GetFiles(from))
        {
            string name = Path.GetFileName(f);
            if ((top && WrittenByMtp.Contains(name)) || name.EndsWith(".safetensors", StringComparison.Ordinal) || name.Contains(OutputFolder.PartialSuffix)) continue;
            Directory.CreateDirectory(to);
            string dest = Path.Combine(to, name);
            if (!File.Exists(dest)) File.Copy(f, dest);
        }
        foreach (string d in Directory.GetDirectories(from))
        {
            string name = Path.GetFileName(d);
            if (name.StartsWith('.') || name.Contains(OutputFolder.PartialSuffix) || NotCopiedFolders.Contains(name) || new DirectoryInfo(d).LinkTarget != null) continue;
            string full = d.TrimEnd('/');
            if (outputs.Any(o => o == full || o.StartsWith(full + "/", StringComparison.Ordinal))) continue;
            CopyLevel(full, Path.Combine(to, name), outputs, top: false);
        }
    }
}
