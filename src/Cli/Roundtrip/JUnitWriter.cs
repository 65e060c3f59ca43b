using System.Globalization;
using System.Xml.Linq;
using Mtp.SafeTensors;

namespace Mtp.Cli.Roundtrip;

/// <summary>
/// Writes a round trip's verdict as JUnit XML (one <c>testsuite</c>, one <c>testcase</c> per tensor group, a
/// <c>failure</c> listing the group's differing tensors), the form CI systems (GitHub Actions reporters, GitLab, Jenkins)
/// display as tests.
/// </summary>
public static class JUnitWriter
{
    /// <summary>The XML document of <paramref name="verdict"/>.</summary>
    public static XDocument Build(RoundtripVerdict verdict)
    {
        string cls = "mtp.roundtrip." + verdict.Family;
        var cases = verdict.Groups.Select(g =>
        {
            var c = new XElement("testcase", new XAttribute("classname", cls), new XAttribute("name", g.Group.Name));
            if (g.Failures.Count > 0)
                c.Add(new XElement("failure",
                    new XAttribute("message", $"{g.Failures.Count} of {Units.Count(g.Tensors, "tensor")} not byte-identical: {string.Join(", ", g.Failures.Take(3).Select(f => f.Name))}{(g.Failures.Count > 3 ? ", ..." : "")}"),
                    new XAttribute("type", "different"),
                    string.Join("\n", g.Failures.Select(f => $"{f.Name}: {f.Detail}"))));
            return c;
        }).ToList();
        int failures = verdict.Groups.Count(g => g.Failures.Count > 0);
        string seconds = verdict.Seconds.ToString("F3", CultureInfo.InvariantCulture);
        var suite = new XElement("testsuite",
            new XAttribute("name", $"mtp roundtrip {verdict.Input}"), new XAttribute("tests", cases.Count), new XAttribute("failures", failures),
            new XAttribute("errors", 0), new XAttribute("skipped", 0), new XAttribute("time", seconds),
            new XAttribute("timestamp", verdict.Finished.ToString("yyyy-MM-ddTHH:mm:ss", CultureInfo.InvariantCulture)),
            cases, new XElement("system-out", verdict.Summary));
        return new XDocument(new XDeclaration("1.0", "utf-8", null),
            new XElement("testsuites", new XAttribute("name", "mtp roundtrip"), new XAttribute("tests", cases.Count), new XAttribute("failures", failures),
                new XAttribute("errors", 0), new XAttribute("time", seconds), suite));
    }

    /// <summary>A JUnit document with one errored test case: the round trip stopped before a verdict (the message says why).</summary>
    public static XDocument Error(string input, string message, string errorClass)
    {
        var c = new XElement("testcase", new XAttribute("classname", "mtp.roundtrip"), new XAttribute("name", "roundtrip"),
            new XElement("error", new XAttribute("message", message), new XAttribute("type", errorClass)));
        return new XDocument(new XDeclaration("1.0", "utf-8", null),
            new XElement("testsuites", new XAttribute("name", "mtp roundtrip"), new XAttribute("tests", 1), new XAttribute("failures", 0), new XAttribute("errors", 1),
                new XElement("testsuite", new XAttribute("name", $"mtp roundtrip {input}"), new XAttribute("tests", 1), new XAttribute("failures", 0),
                    new XAttribute("errors", 1), new XAttribute("skipped", 0), c)));
    }

    /// <summary>Writes <paramref name="doc"/> to <paramref name="path"/> atomically (a reader never sees half a file).</summary>
    /// <exception cref="CliException">Exit 5 when the file cannot be written (names it).</exception>
    public static void Save(XDocument doc, string path)
    {
        try
        {
            string? dir = Path.GetDirectoryName(Path.GetFullPath(path));
            if (dir != null) Directory.CreateDirectory(dir);
            OutputTransaction.WriteAllText(path, doc.Declaration + "\n" + doc.Root + "\n");
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new CliException(ExitCodes.Io, $"{path}: cannot write the JUnit report: {e.Message}", file: path);
        }
    }
}
