namespace Mtp.Tests.Shared;

/// <summary>Locates the repository (and its fixtures/) from a test's output directory.</summary>
public static class RepoPaths
{
    /// <summary>The repository root: the nearest ancestor of the test binary holding Mtp.sln.</summary>
    public static string Root { get; } = FindRoot();

    /// <summary>The committed fixtures directory.</summary>
    public static string Fixtures => Path.Combine(Root, "fixtures");

    /// <summary>A fresh empty temporary directory inside this run's folder, which is removed when the tests end (see <see cref="TempDirs"/>).</summary>
    public static string NewTempDir(string tag) => TempDirs.Default.New(tag);

    static string FindRoot()
    {
        for (var d = new DirectoryInfo(AppContext.BaseDirectory); d != null; d = d.Parent)
            if (File.Exists(Path.Combine(d.FullName, "Mtp.sln"))) return d.FullName;
        throw new InvalidOperationException("Mtp.sln not found above " + AppContext.BaseDirectory);
    }
}
