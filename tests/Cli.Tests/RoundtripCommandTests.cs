using System.Text.Json;
using System.Text.Json.Nodes;
using System.Xml;
using System.Xml.Linq;
using System.Xml.Schema;
using Mtp.Cli.Roundtrip;
using Mtp.SafeTensors;
using Mtp.Tests.Shared;

namespace Mtp.Cli.Tests;

/// <summary>
/// <c>mtp roundtrip</c>: every fixture comes back byte for byte (exit 0); a weight damaged between the two conversions is
/// exit 6 naming the tensor and its max difference; the JUnit file is valid JUnit XML, --json one document; the work
/// folder's intermediates are removed at the end, on failure and on interruption unless --keep.
/// </summary>
public class RoundtripCommandTests
{
    string _dir = "";

    [SetUp] public void SetUp() => _dir = RepoPaths.NewTempDir("roundtrip");
    [TearDown] public void TearDown() { if (Directory.Exists(_dir)) Directory.Delete(_dir, true); }

    static IEnumerable<string> Fixtures() =>
        Directory.GetDirectories(RepoPaths.Fixtures).Where(d => File.Exists(Path.Combine(d, "config.json"))).Select(Path.GetFileName).Order()!;

    [TestCaseSource(nameof(Fixtures))]
    public void EveryFixtureComesBackByteForByte(string fixture)
    {
        string work = Path.Combine(_dir, "work"), junit = Path.Combine(_dir, "report.xml");
        var r = CliRunner.Run("roundtrip", Path.Combine(RepoPaths.Fixtures, fixture), "--work", work, "--junit", junit);
        Assert.That(r.Code, Is.EqualTo(ExitCodes.Ok), r.Out + r.Err);
        Assert.That(r.Out.Trim(), Does.StartWith("identical: "));
        Assert.That(Directory.Exists(work), Is.False, "the work folder it made is removed without --keep");
        XDocument doc = AssertJUnit(junit);
        Assert.That(doc.Descendants("testcase").Count(), Is.GreaterThanOrEqualTo(3), "embeddings, at least one layer and the MTP depth");
        Assert.That(doc.Descendants("failure"), Is.Empty);
        Assert.That(doc.Descendants("testcase").Select(c => (string)c.Attribute("name")!), Has.Some.StartWith("mtp").And.Some.EqualTo("embeddings").And.Some.EqualTo("layer 0"));
    }

    [Test]
    public void JsonIsOneDocumentAndEveryTensorIsInOneGroup()
    {
        string hf = Path.Combine(RepoPaths.Fixtures, "deepseek-v3");
        var r = CliRunner.Run("roundtrip", hf, "--json");
        Assert.That(r.Code, Is.EqualTo(ExitCodes.Ok), r.Out + r.Err);
        Assert.That(r.Err, Is.Empty, "--json: no progress lines");
        var json = ParseOneDocument(r.Out);
        Assert.That((bool)json["ok"]!, Is.True);
        Assert.That((string)json["family"]!, Is.EqualTo("deepseek-v3"));
        // The fixture's MTP layer is model.layers.3 (num_hidden_layers = 3); its tied copies of the embedding and the head,
        // dropped on import, still count in its group.
        var groups = json["groups"]!.AsArray().Select(g => ((string)g!["name"]!, (int)g["tensors"]!)).ToList();
        Assert.That(groups.Select(g => g.Item1), Is.EqualTo(new[] { "embeddings", "layer 0", "layer 1", "layer 2", "mtp 0" }));
        using var original = Checkpoint.Open(hf);
        Assert.That(groups.Sum(g => g.Item2), Is.EqualTo(original.Tensors.Count));
        Assert.That(groups.Single(g => g.Item1 == "mtp 0").Item2, Is.EqualTo(original.Tensors.Count(t => t.Name.StartsWith("model.layers.3.", StringComparison.Ordinal))));
        Assert.That((int)json["verify"]!["compared"]!, Is.EqualTo(original.Tensors.Count));
        Assert.That(Directory.Exists((string)json["work"]!), Is.False);

        var bad = CliRunner.Run("roundtrip", Path.Combine(_dir, "absent"), "--json");
        Assert.That(bad.Code, Is.EqualTo(ExitCodes.Usage));
        Assert.That((string)ParseOneDocument(bad.Out)["error"]!["class"]!, Is.EqualTo("usage"));
        Assert.That(bad.Err.Trim().Split('\n'), Has.Length.EqualTo(1));
    }

    [Test]
    public void AWeightDamagedBetweenTheConversionsIsExitSixNamingItWithItsMaxDifference()
    {
        // The split form's steps let the test damage the training-layout intermediate between the two directions: one
        // flipped byte in one BF16 weight, as a faulty disk or a conversion bug would leave it.
        string hf = Path.Combine(RepoPaths.Fixtures, "deepseek-v3"), work = Path.Combine(_dir, "work"), junit = Path.Combine(_dir, "report.xml");
        Assert.That(CliRunner.Run("roundtrip", hf, "--work", work, "--part", "1/1").Code, Is.EqualTo(ExitCodes.Ok));
        Assert.That(CliRunner.Run("roundtrip", hf, "--work", work, "--merge").Code, Is.EqualTo(ExitCodes.Ok));
        const string weight = "model.layers.1.self_attn.o_proj.weight";
        FlipByte(Path.Combine(work, "native"), weight, 7);
        var part = CliRunner.Run("roundtrip", hf, "--work", work, "--part", "1/1");
        Assert.That(part.Code, Is.EqualTo(ExitCodes.Ok), part.Err);
        var r = CliRunner.Run("roundtrip", hf, "--work", work, "--merge", "--json", "--junit", junit);
        Assert.That(r.Code, Is.EqualTo(ExitCodes.Different), r.Out + r.Err);
        var json = ParseOneDocument(r.Out);
        var diffs = json["verify"]!["differences"]!.AsArray();
        Assert.That(diffs.Select(d => (string)d!["name"]!), Is.EqualTo(new[] { weight }));
        Assert.That((double)diffs[0]!["max_abs_diff"]!, Is.GreaterThan(0));
        var failing = json["groups"]!.AsArray().Where(g => !(bool)g!["passed"]!).Select(g => (string)g!["name"]!);
        Assert.That(failing, Is.EqualTo(new[] { "layer 1" }));
        XDocument doc = AssertJUnit(junit);
        var failure = doc.Descendants("failure").Single();
        Assert.That((string)failure.Parent!.Attribute("name")!, Is.EqualTo("layer 1"));
        Assert.That(failure.Value, Does.Contain(weight).And.Contain("max abs difference"));
        Assert.That(Directory.Exists(work), Is.False, "the final merge removes the intermediates");
    }

    [Test]
    public void TheTextReportNamesTheTensorOnItsOwnLine()
    {
        string hf = Path.Combine(RepoPaths.Fixtures, "qwen3.5-moe-fp8"), work = Path.Combine(_dir, "work");
        Assert.That(CliRunner.Run("roundtrip", hf, "--work", work, "--part", "1/1").Code, Is.EqualTo(ExitCodes.Ok));
        Assert.That(CliRunner.Run("roundtrip", hf, "--work", work, "--merge").Code, Is.EqualTo(ExitCodes.Ok));
        FlipByte(Path.Combine(work, "native"), "mtp.layers.0.mlp.shared_expert.down_proj.weight", 7);
        Assert.That(CliRunner.Run("roundtrip", hf, "--work", work, "--part", "1/1").Code, Is.EqualTo(ExitCodes.Ok));
        var r = CliRunner.Run("roundtrip", hf, "--work", work, "--merge", "--keep");
        Assert.That(r.Code, Is.EqualTo(ExitCodes.Different), r.Out + r.Err);
        var lines = r.Out.Trim().Split('\n');
        Assert.That(lines[0], Does.StartWith("differs: mtp 0: mtp.layers.0.mlp.shared_expert.down_proj.weight: bytes: first difference at element "));
        Assert.That(lines[^1], Does.StartWith("different: 1 tensor differs, 0 missing from the round trip"));
        Assert.That(Directory.Exists(Path.Combine(work, "hf")), Is.True, "--keep keeps the intermediates");
    }

    [Test]
    public void SplitRoundTripChecksEveryStepAndMatchesTheWholeOne()
    {
        string hf = Path.Combine(RepoPaths.Fixtures, "deepseek-v4-flash"), work = Path.Combine(_dir, "work");
        string[] Args(params string[] more) => new[] { "roundtrip", hf, "--work", work }.Concat(more).ToArray();

        var early = CliRunner.Run(Args("--merge"));
        Assert.That(early.Code, Is.EqualTo(ExitCodes.Usage), "nothing to merge yet");
        Assert.That(CliRunner.Run(Args("--part", "1/2")).Code, Is.EqualTo(ExitCodes.Ok));
        var halfNative = CliRunner.Run(Args("--merge"));
        Assert.That(halfNative.Code, Is.EqualTo(ExitCodes.Inconsistent), halfNative.Err);
        Assert.That(halfNative.Err, Does.Contain("2/2"));
        Assert.That(CliRunner.Run(Args("--part", "2/2")).Code, Is.EqualTo(ExitCodes.Ok));
        Assert.That(CliRunner.Run(Args("--merge")).Code, Is.EqualTo(ExitCodes.Ok));
        Assert.That(File.Exists(Path.Combine(work, "native", "conversion.json")));

        var noHf = CliRunner.Run(Args("--merge"));
        Assert.That(noHf.Code, Is.EqualTo(ExitCodes.Usage), noHf.Err);
        Assert.That(CliRunner.Run(Args("--part", "2/2")).Code, Is.EqualTo(ExitCodes.Ok));
        var halfHf = CliRunner.Run(Args("--merge"));
        Assert.That(halfHf.Code, Is.EqualTo(ExitCodes.Inconsistent), halfHf.Err);
        Assert.That(halfHf.Err.Trim().Split('\n'), Has.Length.EqualTo(1));
        Assert.That(halfHf.Err, Does.Contain("part(s) missing: 1/2"));
        Assert.That(CliRunner.Run(Args("--part", "1/2")).Code, Is.EqualTo(ExitCodes.Ok));
        var wrongInput = CliRunner.Run("roundtrip", Path.Combine(RepoPaths.Fixtures, "deepseek-v3"), "--work", work, "--merge");
        Assert.That(wrongInput.Code, Is.EqualTo(ExitCodes.Usage), "the work folder came from another checkpoint");
        Assert.That(wrongInput.Err, Does.Contain("another checkpoint"));

        // A part that died after converting but before its verdict: the merge completes hf/ and names the part; the part,
        // rerun, only compares again.
        File.Delete(Path.Combine(work, "verdicts", "part-1-of-2.json"));
        var noVerdict = CliRunner.Run(Args("--merge"));
        Assert.That(noVerdict.Code, Is.EqualTo(ExitCodes.Inconsistent), noVerdict.Err);
        Assert.That(noVerdict.Err, Does.Contain("1 of 2 part verdicts missing: 1/2"));
        var again = CliRunner.Run(Args("--part", "1/2"));
        Assert.That(again.Code, Is.EqualTo(ExitCodes.Ok), again.Err);
        Assert.That(again.Err, Does.Contain("part 1/2: compared (hf/ already merged)"));

        var done = CliRunner.Run(Args("--merge", "--json"));
        Assert.That(done.Code, Is.EqualTo(ExitCodes.Ok), done.Out + done.Err);
        var whole = CliRunner.Run("roundtrip", hf, "--json");
        Assert.That(whole.Code, Is.EqualTo(ExitCodes.Ok));
        JsonObject split = ParseOneDocument(done.Out), one = ParseOneDocument(whole.Out);
        Assert.That(split["groups"]!.ToJsonString(), Is.EqualTo(one["groups"]!.ToJsonString()));
        Assert.That((int)split["verify"]!["compared"]!, Is.EqualTo((int)one["verify"]!["compared"]!));
        Assert.That(Directory.Exists(work), Is.False);
    }

    [Test]
    public void AFailedConversionRemovesTheWorkFolderAndWritesAnErroredJUnitReport()
    {
        string hf = Path.Combine(_dir, "hf"), work = Path.Combine(_dir, "work"), junit = Path.Combine(_dir, "report.xml");
        Directory.CreateDirectory(hf);
        foreach (string f in Directory.GetFiles(Path.Combine(RepoPaths.Fixtures, "deepseek-v3"))) File.Copy(f, Path.Combine(hf, Path.GetFileName(f)));
        string shard = Path.Combine(hf, "model-00002-of-00002.safetensors");
        byte[] bytes = File.ReadAllBytes(shard);
        File.WriteAllBytes(shard, bytes[..(bytes.Length - 100)]);
        var r = CliRunner.Run("roundtrip", hf, "--work", work, "--junit", junit);
        Assert.That(r.Code, Is.EqualTo(ExitCodes.Malformed), r.Err);
        Assert.That(r.Err.Trim().Split('\n').Where(l => !l.StartsWith("mtp: roundtrip: ", StringComparison.Ordinal)).ToList(), Has.Count.EqualTo(1));
        Assert.That(r.Err, Does.Contain("model-00002-of-00002.safetensors"));
        Assert.That(Directory.Exists(work), Is.False);
        Assert.That(Directory.GetFileSystemEntries(_dir).Select(Path.GetFileName), Is.EquivalentTo(new[] { "hf", "report.xml" }), "no temporary left");
        XDocument doc = AssertJUnit(junit);
        Assert.That(doc.Descendants("error").Single().Attribute("type")!.Value, Is.EqualTo("malformed"));
    }

    [Test]
    public void TheDefaultWorkFolderIsRemovedUnlessKept()
    {
        string tmp = RepoPaths.NewTempDir("roundtrip-tmp");
        string? old = Environment.GetEnvironmentVariable("TMPDIR");
        Environment.SetEnvironmentVariable("TMPDIR", tmp);
        try
        {
            string hf = Path.Combine(RepoPaths.Fixtures, "qwen3.5-moe");
            Assert.That(CliRunner.Run("roundtrip", hf).Code, Is.EqualTo(ExitCodes.Ok));
            Assert.That(Directory.GetFileSystemEntries(tmp), Is.Empty);
            var kept = CliRunner.Run("roundtrip", hf, "--keep");
            Assert.That(kept.Code, Is.EqualTo(ExitCodes.Ok));
            string left = Directory.GetDirectories(tmp).Single();
            Assert.That(Path.GetFileName(left), Does.StartWith("mtp-roundtrip-"));
            Assert.That(kept.Err, Does.Contain(left));
            foreach (string sub in new[] { "native", "hf" })
                Assert.That(File.Exists(Path.Combine(left, sub, "conversion.json")), sub);
        }
        finally
        {
            Environment.SetEnvironmentVariable("TMPDIR", old);
            Directory.Delete(tmp, true);
        }
    }

    [TestCase("native", "to native: ")]
    [TestCase("verify", "to hf: ")]
    public void AnInterruptedRoundTripRemovesItsWork(string stage, string cancelAfter)
    {
        string work = Path.Combine(_dir, "work");
        using var cancel = new CancellationTokenSource();
        var options = new RoundtripOptions
        {
            Input = Path.Combine(RepoPaths.Fixtures, "deepseek-v3"), Work = work, Cancel = cancel.Token,
            Log = line => { if (line.StartsWith(cancelAfter, StringComparison.Ordinal)) cancel.Cancel(); },
        };
        var e = Assert.Throws<OutputInterruptedException>(() => RoundtripRunner.RunWhole(options), stage);
        Assert.That(e!.Removed, Is.EqualTo(Path.GetFullPath(work)));
        Assert.That(Directory.GetFileSystemEntries(_dir), Is.Empty, "neither the work folder nor a temporary is left");
    }

    [Test]
    public void SigintMidConversionRemovesTheWorkFolderAndExits130()
    {
        InheritedSignals.RequireSigInt();
        // A checkpoint big enough that the child is still converting when the signal lands (~0.3 s of synth here).
        string hf = Path.Combine(_dir, "hf"), work = Path.Combine(_dir, "work");
        var synth = CliRunner.Run("synth", "--family", "deepseek-v4", "--size", "128MB", hf);
        Assert.That(synth.Code, Is.EqualTo(ExitCodes.Ok), synth.Err);
        var err = new System.Text.StringBuilder();
        var psi = new System.Diagnostics.ProcessStartInfo("dotnet") { RedirectStandardError = true, RedirectStandardOutput = true, UseShellExecute = false };
        foreach (string a in new[] { Path.Combine(AppContext.BaseDirectory, "mtp.dll"), "roundtrip", hf, "--work", work }) psi.ArgumentList.Add(a);
        using var p = System.Diagnostics.Process.Start(psi)!;
        p.OutputDataReceived += (_, _) => { };
        p.ErrorDataReceived += (_, e) => { if (e.Data != null) lock (err) err.AppendLine(e.Data); };
        p.BeginOutputReadLine();
        p.BeginErrorReadLine();
        // Signal once the first conversion writes its shard into work/native.partial-PID.
        string partial = Path.Combine(work, "native") + OutputFolder.PartialSuffix + p.Id;
        var sw = System.Diagnostics.Stopwatch.StartNew();
        while (!p.HasExited && sw.Elapsed < TimeSpan.FromSeconds(60) && !(Directory.Exists(partial) && Directory.EnumerateFiles(partial).Any())) Thread.Sleep(5);
        Assert.That(p.HasExited, Is.False, $"the round trip ended before it could be signalled: {err}");
        Assert.That(SendSignal(p.Id, 2), Is.EqualTo(0));
        Assert.That(p.WaitForExit(60_000), Is.True, "the signalled round trip did not stop within 60 s");
        p.WaitForExit();
        Assert.That(p.ExitCode, Is.EqualTo(130), err.ToString());
        Assert.That(err.ToString(), Does.Contain($"mtp: interrupted, removed {work}"));
        Assert.That(Directory.GetFileSystemEntries(_dir).Select(Path.GetFileName), Is.EqualTo(new[] { "hf" }), "neither the work folder nor a temporary is left");
    }

    [System.Runtime.InteropServices.DllImport("libc", EntryPoint = "kill", SetLastError = true)]
    static extern int SendSignal(int pid, int signal);

    [Test]
    public void MistakesAreUsageErrorsOnOneLine()
    {
        string hf = Path.Combine(RepoPaths.Fixtures, "deepseek-v3"), work = Path.Combine(_dir, "work");
        Directory.CreateDirectory(work);
        File.WriteAllText(Path.Combine(work, "notes.txt"), "mine");
        foreach (var (args, names) in new[]
        {
            (new[] { "--work", work }, "notes.txt"),
            (new[] { "--part", "1/2" }, "--work"),
            (new[] { "--work", work, "--part", "3/2" }, "--part"),
            (new[] { "--work", work, "--part", "1/2", "--junit", "x.xml" }, "--junit"),
            (new[] { "--work", work, "--part", "1/2", "--merge" }, "--merge"),
        })
        {
            var r = CliRunner.Run(new[] { "roundtrip", hf }.Concat(args).ToArray());
            Assert.That(r.Code, Is.EqualTo(ExitCodes.Usage), string.Join(" ", args));
            Assert.That(r.Err.Trim().Split('\n'), Has.Length.EqualTo(1), r.Err);
            Assert.That(r.Err, Does.Contain(names));
        }
        Assert.That(Directory.GetFileSystemEntries(work).Select(Path.GetFileName), Is.EqualTo(new[] { "notes.txt" }), "nothing of the user's is touched");
    }

    // ---------------------------------------------------------------- helpers

    static JsonObject ParseOneDocument(string text)
    {
        // JsonDocument.Parse refuses anything after the first value, so this fails on two documents or a stray line.
        using var doc = JsonDocument.Parse(text);
        return JsonNode.Parse(text)!.AsObject();
    }

    /// <summary>Flips one bit of byte <paramref name="at"/> of <paramref name="tensor"/> in the (single-shard) checkpoint <paramref name="dir"/>.</summary>
    static void FlipByte(string dir, string tensor, int at)
    {
        string shard;
        long offset;
        using (var c = Checkpoint.Open(dir))
        {
            var t = c.Get(tensor);
            shard = t.File.Path;
            offset = t.File.AbsoluteOffset(t.Info) + at;
        }
        using var fs = new FileStream(shard, FileMode.Open, FileAccess.ReadWrite);
        fs.Position = offset;
        int b = fs.ReadByte();
        fs.Position = offset;
        fs.WriteByte((byte)(b ^ 0x01)); // the high byte's low bit: a BF16 exponent bit, so the value changes 4-fold
    }

    /// <summary>Validates <paramref name="path"/> against the JUnit schema below and checks its counts add up.</summary>
    static XDocument AssertJUnit(string path)
    {
        var schemas = new XmlSchemaSet();
        schemas.Add(null, XmlReader.Create(new StringReader(JUnitSchema)));
        var errors = new List<string>();
        XDocument doc = XDocument.Load(path);
        doc.Validate(schemas, (_, e) => errors.Add(e.Message));
        Assert.That(errors, Is.Empty, "not valid JUnit XML");
        foreach (var el in doc.Descendants().Where(e => e.Name == "testsuite" || e.Name == "testsuites"))
        {
            Assert.That((int)el.Attribute("tests")!, Is.EqualTo(el.Descendants("testcase").Count()), el.Name + " tests");
            Assert.That((int)el.Attribute("failures")!, Is.EqualTo(el.Descendants("testcase").Count(c => c.Element("failure") != null)), el.Name + " failures");
            Assert.That((int)el.Attribute("errors")!, Is.EqualTo(el.Descendants("testcase").Count(c => c.Element("error") != null)), el.Name + " errors");
        }
        return doc;
    }

    // The JUnit XML that CI report readers accept (the Ant / Jenkins form): testsuites > testsuite > testcase, a test
    // case holding at most one failure or error, the counts and times as numbers.
    const string JUnitSchema = """
        <xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema">
          <xs:complexType name="problem">
            <xs:simpleContent>
              <xs:extension base="xs:string">
                <xs:attribute name="message" type="xs:string" use="required"/>
                <xs:attribute name="type" type="xs:string" use="required"/>
              </xs:extension>
            </xs:simpleContent>
          </xs:complexType>
          <xs:element name="testsuites">
            <xs:complexType>
              <xs:sequence>
                <xs:element name="testsuite" maxOccurs="unbounded">
                  <xs:complexType>
                    <xs:sequence>
                      <xs:element name="testcase" minOccurs="0" maxOccurs="unbounded">
                        <xs:complexType>
                          <xs:choice minOccurs="0">
                            <xs:element name="failure" type="problem"/>
                            <xs:element name="error" type="problem"/>
                          </xs:choice>
                          <xs:attribute name="name" type="xs:string" use="required"/>
                          <xs:attribute name="classname" type="xs:string" use="required"/>
                          <xs:attribute name="time" type="xs:decimal"/>
                        </xs:complexType>
                      </xs:element>
                      <xs:element name="system-out" type="xs:string" minOccurs="0"/>
                    </xs:sequence>
                    <xs:attribute name="name" type="xs:string" use="required"/>
                    <xs:attribute name="tests" type="xs:nonNegativeInteger" use="required"/>
                    <xs:attribute name="failures" type="xs:nonNegativeInteger" use="required"/>
                    <xs:attribute name="errors" type="xs:nonNegativeInteger" use="required"/>
                    <xs:attribute name="skipped" type="xs:nonNegativeInteger"/>
                    <xs:attribute name="time" type="xs:decimal"/>
                    <xs:attribute name="timestamp" type="xs:dateTime"/>
                  </xs:complexType>
                </xs:element>
              </xs:sequence>
              <xs:attribute name="name" type="xs:string"/>
              <xs:attribute name="tests" type="xs:nonNegativeInteger" use="required"/>
              <xs:attribute name="failures" type="xs:nonNegativeInteger" use="required"/>
              <xs:attribute name="errors" type="xs:nonNegativeInteger" use="required"/>
              <xs:attribute name="time" type="xs:decimal"/>
            </xs:complexType>
          </xs:element>
        </xs:schema>
        """;
}
