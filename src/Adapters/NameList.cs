namespace Mtp.Adapters;

/// <summary>Long lists of tensor names cut for a one-line message; the full list travels beside it (exception property, --json, --verbose).</summary>
public static class NameList
{
    /// <summary>How many names a one-line message shows.</summary>
    public const int Shown = 5;

    /// <summary>"a, b, c, d, e (and 51 more; --verbose lists all)", or all of them when there are at most <paramref name="shown"/>.</summary>
    public static string Cut(IReadOnlyList<string> names, int shown = Shown, string separator = ", ") =>
        string.Join(separator, names.Take(shown)) + (names.Count > shown ? $" (and {names.Count - shown} more; --verbose lists all)" : "");
}
