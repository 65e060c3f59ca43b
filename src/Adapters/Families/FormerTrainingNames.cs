using Mtp.SafeTensors;

namespace Mtp.Adapters;

/// <summary>
/// Names an earlier version of the training layout gave a family's tensors, and the names they have now: checkpoints
/// written then are still read (converted to HF, loaded into the model) by reading each old name as its current one.
/// Pure renames only; the tables are the family's data (e.g. <see cref="DeepSeekV4FormerNames"/>).
/// </summary>
/// <param name="BlockSubNames">Old -> current name below a decoder block's prefix (<c>model.layers.{i}.</c>, <c>mtp.layers.{k}.</c>).</param>
/// <param name="WholeNames">Old -> current full name (tensors outside the blocks).</param>
public sealed record FormerTrainingNames(IReadOnlyDictionary<string, string> BlockSubNames, IReadOnlyDictionary<string, string> WholeNames)
{
    static readonly string[] BlockRoots = { "model.layers.", "mtp.layers." };

    /// <summary>The current name of <paramref name="name"/> when it is a former one, else null.</summary>
    public string? Current(string name)
    {
        if (WholeNames.TryGetValue(name, out string? whole)) return whole;
        foreach (string root in BlockRoots)
        {
            if (!name.StartsWith(root, StringComparison.Ordinal)) continue;
            int dot = name.IndexOf('.', root.Length);
            if (dot <= root.Length || !name.AsSpan(root.Length, dot - root.Length).ToString().All(char.IsAsciiDigit)) return null;
            return BlockSubNames.TryGetValue(name[(dot + 1)..], out string? sub) ? name[..(dot + 1)] + sub : null;
        }
        return null;
    }

    /// <summary>Whether any of <paramref name="names"/> is a former name.</summary>
    public bool AnyIn(IEnumerable<string> names) => names.Any(n => Current(n) != null);

    /// <summary>
    /// <paramref name="ckpt"/> with former names read as current ones when its config's family has such a table and a
    /// former name occurs; else <paramref name="ckpt"/> itself. Only for training-layout checkpoints (an HF checkpoint's
    /// legacy <c>model.layers.{L+k}</c> names are DeepSeek's, not former training names). The result owns the shards.
    /// </summary>
    public static Checkpoint Upgrade(Checkpoint ckpt, string? family = null)
    {
        family ??= ckpt.Config is { } cfg ? FamilyDetector.Detect(cfg) : null;
        if (family is null || Families.Normalize(family) is not string id || Families.Module(id).FormerNames is not { } table) return ckpt;
        return table.AnyIn(ckpt.Tensors.Select(t => t.Name)) ? ckpt.WithNames(table.Current) : ckpt;
    }
}
