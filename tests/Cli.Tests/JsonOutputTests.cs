using System.Text.Json;
using Mtp.Tests.Shared;

namespace Mtp.Cli.Tests;

/// <summary>With --json every command prints exactly one JSON document on stdout, and nothing on stderr when it succeeds.</summary>
public class JsonOutputTests
{
    string _dir = "";
    CommandCases.Paths _paths = null!;

    [OneTimeSetUp]
    public void SetUp()
    {
        _dir = RepoPaths.NewTempDir("json-output");
        _paths = CommandCases.Prepare(_dir);
    }

    [OneTimeTearDown] public void TearDown() => Directory.Delete(_dir, true);

    /// <summary>The root value of <paramref name="stdout"/>, which must be a single JSON document: JsonDocument refuses a second value (JSON lines, a table after it).</summary>
    static JsonElement OneDocument(string stdout, string what)
    {
        try
        {
            using var doc = JsonDocument.Parse(stdout);
            return doc.RootElement.Clone();
        }
        catch (JsonException e)
        {
            Assert.Fail($"{what}: stdout is not one JSON document ({e.Message}):\n{stdout}");
            throw;
        }
    }

    [TestCaseSource(typeof(CommandCases), nameof(CommandCases.Names))]
    public void PrintsOneJsonDocumentAndNoLogLines(string name)
    {
        var (code, stdout, stderr) = CliRunner.Run(CommandCases.Args(name, _paths, "--json"));
        Assert.That(code, Is.EqualTo(ExitCodes.Ok), stderr + stdout);
        var root = OneDocument(stdout, name);
        Assert.That(root.ValueKind, Is.EqualTo(JsonValueKind.Object), name);
        Assert.That(stderr, Is.Empty, "--json: stderr carries only warnings and errors");
    }

    [Test]
    public void TrainSummaryAndStepsAreInTheOneDocument()
    {
        var (code, stdout, stderr) = CliRunner.Run(CommandCases.Args("train", _paths, "--json"));
        Assert.That(code, Is.EqualTo(ExitCodes.Ok), stderr);
        var root = OneDocument(stdout, "train");
        Assert.That(root.GetProperty("steps").GetArrayLength(), Is.EqualTo(2));
        Assert.That(root.GetProperty("steps")[1].GetProperty("step").GetInt64(), Is.EqualTo(2));
        Assert.That(root.GetProperty("summary").GetProperty("steps").GetInt32(), Is.EqualTo(2));
        Assert.That(root.GetProperty("summary").GetProperty("tokens_per_s").GetDouble(), Is.GreaterThan(0));
        Assert.That(root.GetProperty("step").GetInt64(), Is.EqualTo(2));
    }

    [Test]
    public void SynthAndDemoReportWhatTheyDid()
    {
        var synth = CliRunner.Run(CommandCases.Args("synth", _paths, "--json"));
        var s = OneDocument(synth.Out, "synth");
        Assert.That(s.GetProperty("family").GetString(), Is.EqualTo("deepseek-v3"));
        Assert.That(s.GetProperty("tensors").GetInt32(), Is.GreaterThan(0));
        Assert.That(Directory.Exists(s.GetProperty("output").GetString()), Is.True);

        var demo = CliRunner.Run(CommandCases.Args("demo", _paths, "--json"));
        var d = OneDocument(demo.Out, "demo");
        Assert.That(d.GetProperty("ok").GetBoolean(), Is.True);
        Assert.That(d.GetProperty("stages").EnumerateArray().Select(x => x.GetProperty("name").GetString()),
            Is.EqualTo(new[] { "synthesize", "inspect", "convert to training layout", "round trip untrained", "train", "export trained", "re-import trained" }));
        Assert.That(d.GetProperty("stages").EnumerateArray().Select(x => x.GetProperty("status").GetString()), Is.All.EqualTo("ok"));
    }

    [Test]
    public void MergeIndexPrintsItsSummary()
    {
        string out1 = Path.Combine(RepoPaths.NewTempDir("json-merge"), "out");
        Assert.That(CliRunner.Run("convert", _paths.Hf, out1, "--to", "native", "--part", "1/1").Code, Is.EqualTo(ExitCodes.Ok));
        var (code, stdout, stderr) = CliRunner.Run("convert", "--merge-index", out1, "--json");
        Assert.That(code, Is.EqualTo(ExitCodes.Ok), stderr);
        var root = OneDocument(stdout, "merge-index");
        Assert.That(root.GetProperty("direction").GetString(), Is.EqualTo("merge-index"));
        Assert.That(root.GetProperty("tensors").GetInt32(), Is.GreaterThan(0));
        Assert.That(stderr, Is.Empty);
    }

    [Test]
    public void AFailureIsOneDocumentToo()
    {
        var (code, stdout, stderr) = CliRunner.Run("train", Path.Combine(_dir, "nope"), "--steps", "1", "--json");
        Assert.That(code, Is.EqualTo(ExitCodes.Usage));
        Assert.That(OneDocument(stdout, "train error").GetProperty("error").GetProperty("class").GetString(), Is.EqualTo("usage"));
        Assert.That(stderr.Trim().Split('\n'), Has.Length.EqualTo(1));
    }

    [Test]
    public void AFailedDemoIsOneDocumentWithItsStagesAndTheError()
    {
        // A file where the demo writes its first checkpoint: the synthesize stage fails and the rest are skipped.
        string work = RepoPaths.NewTempDir("json-demo-fails");
        File.WriteAllText(Path.Combine(work, "hf"), "");
        var (code, stdout, stderr) = CliRunner.Run("demo", "--work", work, "--steps", "0", "--json");
        Assert.That(code, Is.EqualTo(ExitCodes.Inconsistent), stderr);
        var root = OneDocument(stdout, "failed demo");
        Assert.That(root.GetProperty("ok").GetBoolean(), Is.False);
        Assert.That(root.GetProperty("stages").EnumerateArray().Select(x => x.GetProperty("status").GetString()),
            Is.EqualTo(new[] { "failed", "skipped", "skipped", "skipped", "skipped", "skipped", "skipped" }));
        Assert.That(root.GetProperty("error").GetProperty("message").GetString(), Does.Contain("is a file"));
        Assert.That(stderr.Trim().Split('\n'), Has.Length.EqualTo(1), "--json: the error line only");
    }

    /// <summary>The hook for new commands (mtp roundtrip, ...): a command with --json needs a case in <see cref="CommandCases.All"/>.</summary>
    [Test]
    public void EveryCommandWithJsonHasACase()
    {
        var (_, help, _) = CliRunner.Run("--help");
        var commands = new List<string>();
        foreach (string top in CommandNames(help))
        {
            var (_, sub, _) = CliRunner.Run(top, "--help");
            var nested = CommandNames(sub).ToList();
            if (nested.Count == 0) commands.Add(top);
            else commands.AddRange(nested.Select(n => top + " " + n));
        }
        Assert.That(commands, Does.Contain("inspect").And.Contain("bench kernels"), "the help was read");
        foreach (string command in commands)
        {
            var (_, text, _) = CliRunner.Run(command.Split(' ').Append("--help").ToArray());
            if (!text.Contains("--json", StringComparison.Ordinal)) continue;
            bool covered = CommandCases.Names.Any(n => n == command || n.StartsWith(command + " ", StringComparison.Ordinal))
                || command == "bench convert"; // BenchConvertCommandTests
            Assert.That(covered, Is.True, $"mtp {command} has --json but no case in CommandCases.All");
        }
    }

    // The names under "Commands:" in a help text.
    static IEnumerable<string> CommandNames(string help)
    {
        bool inList = false;
        foreach (string line in help.Split('\n'))
        {
            if (line.StartsWith("Commands:", StringComparison.Ordinal)) { inList = true; continue; }
            if (!inList) continue;
            if (!line.StartsWith("  ", StringComparison.Ordinal)) break;
            yield return line.Trim().Split(' ')[0];
        }
    }
}
