using Mtp.Tests.Shared;

namespace Mtp.Cli.Tests;

/// <summary>
/// One successful run of every command, for the output-contract tests (<see cref="JsonOutputTests"/>, <see cref="QuietTests"/>).
/// "{hf}" is the DeepSeek-V3 fixture, "{native}" its training-layout conversion, "{out}" a fresh output path.
/// </summary>
public static class CommandCases
{
    /// <summary>(name, arguments without the output flag). A new command adds its case here: JsonOutputTests checks that every command with --json has one.</summary>
    public static readonly (string Name, string[] Args)[] All =
    {
        ("inspect", new[] { "inspect", "{hf}" }),
        ("convert --to native", new[] { "convert", "{hf}", "{out}", "--to", "native" }),
        ("convert --to hf", new[] { "convert", "{native}", "{out}", "--to", "hf", "--reference", "{hf}" }),
        ("verify", new[] { "verify", "{hf}", "{hf}" }),
        ("train", new[] { "train", "{native}", "--steps", "2", "--seq-len", "16" }),
        ("synth", new[] { "synth", "--family", "deepseek-v3", "{out}" }),
        ("demo", new[] { "demo", "--work", "{out}", "--steps", "1" }),
        ("bench kernels", new[] { "bench", "kernels", "--rows", "32", "--cols", "64", "--threads", "1", "--seconds", "0" }),
        // "bench convert" runs child processes for a minute: BenchConvertCommandTests parses its --json as one document.
        ("bench load", new[] { "bench", "load", "{hf}" }),
        ("bench train", new[] { "bench", "train", "{native}", "{hf}", "--steps", "1", "--untimed", "2", "--dtype", "f32" }),
        ("roundtrip", new[] { "roundtrip", "{hf}", "--work", "{out}" }),
        ("eval", new[] { "eval", "{native}", "--batches", "2", "--seq-len", "16" }),
    };

    /// <summary>The case names, for TestCaseSource.</summary>
    public static IEnumerable<string> Names => All.Select(c => c.Name);

    /// <summary>The arguments of case <paramref name="name"/> with the paths filled in and <paramref name="extra"/> appended.</summary>
    public static string[] Args(string name, Paths paths, params string[] extra)
    {
        string output = Path.Combine(RepoPaths.NewTempDir("case"), "out");
        return All.Single(c => c.Name == name).Args
            .Select(a => a.Replace("{hf}", paths.Hf).Replace("{native}", paths.Native).Replace("{out}", output)).Concat(extra).ToArray();
    }

    /// <summary>The checkpoints the cases read.</summary>
    public sealed record Paths(string Hf, string Native);

    /// <summary>Converts the DeepSeek-V3 fixture once into <paramref name="dir"/>.</summary>
    public static Paths Prepare(string dir)
    {
        string hf = Path.Combine(RepoPaths.Fixtures, "deepseek-v3"), native = Path.Combine(dir, "native");
        var r = CliRunner.Run("convert", hf, native, "--to", "native");
        Assert.That(r.Code, Is.EqualTo(ExitCodes.Ok), r.Err);
        return new Paths(hf, native);
    }
}
