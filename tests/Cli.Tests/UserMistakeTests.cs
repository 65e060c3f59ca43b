using System.Text.Json.Nodes;
using Mtp.Tests.Shared;

namespace Mtp.Cli.Tests;

/// <summary>
/// Ordinary mistakes a new user makes with every command. Each must be a usage (2) or input (3/4) error, never
/// "internal" (1, kept for bugs), on exactly one stderr line that names the flag or file at fault; with --json the
/// error object carries the same class.
/// </summary>
public class UserMistakeTests
{
    /// <summary>One mistake: arguments ({nat}, {hf}, ... are filled in at run time), expected exit code, what the line must name.</summary>
    public sealed record Mistake(string Name, string[] Args, int Code, string Names)
    {
        public override string ToString() => Name;
    }

    static string _work = "";
    static readonly Dictionary<string, string> Paths = new();

    static Mistake M(string name, int code, string names, params string[] args) => new(name, args, code, names);

    const int Usage = ExitCodes.Usage, Malformed = ExitCodes.Malformed, Inconsistent = ExitCodes.Inconsistent;

    public static IEnumerable<Mistake> Mistakes() => new[]
    {
        // inspect
        M("inspect: missing path", Usage, "{nope}", "inspect", "{nope}", "--json"),
        M("inspect: a text file named .safetensors", Malformed, "{text}", "inspect", "{text}", "--json"),
        M("inspect: a folder without checkpoint", Usage, "{empty}", "inspect", "{empty}", "--json"),
        M("inspect: unknown option", Usage, "--colour", "inspect", "{hf}", "--colour", "--json"),
        // convert
        M("convert: missing input", Usage, "{nope}", "convert", "{nope}", "{out}", "--to", "native", "--json"),
        M("convert: no --to", Usage, "--to", "convert", "{hf}", "{out}", "--json"),
        M("convert: --to xyz", Usage, "--to", "convert", "{hf}", "{out}", "--to", "xyz", "--json"),
        M("convert: --dtype fp16", Usage, "--dtype", "convert", "{hf}", "{out}", "--to", "native", "--dtype", "fp16", "--json"),
        M("convert: --expert-layout fused", Usage, "--expert-layout", "convert", "{hf}", "{out}", "--to", "native", "--expert-layout", "fused", "--json"),
        M("convert: --threads -3", Usage, "--threads", "convert", "{hf}", "{out}", "--to", "native", "--threads", "-3", "--json"),
        M("convert: --threads abc", Usage, "--threads", "convert", "{hf}", "{out}", "--to", "native", "--threads", "abc", "--json"),
        M("convert: --max-shard-size abc", Usage, "--max-shard-size", "convert", "{hf}", "{out}", "--to", "native", "--max-shard-size", "abc", "--json"),
        M("convert: --max-memory 0", Usage, "--max-memory", "convert", "{hf}", "{out}", "--to", "native", "--max-memory", "0", "--json"),
        M("convert: --part 3/2", Usage, "--part", "convert", "{hf}", "{out}", "--to", "native", "--part", "3/2", "--json"),
        M("convert: --family llama", Usage, "--family", "convert", "{hf}", "{out}", "--to", "native", "--family", "llama", "--json"),
        M("convert: --reference with --to native", Usage, "--reference", "convert", "{hf}", "{out}", "--to", "native", "--reference", "{hf}", "--json"),
        M("convert: output not empty", Usage, "{full}", "convert", "{hf}", "{full}", "--to", "native", "--json"),
        M("convert: training layout --to native", Usage, "{nat}", "convert", "{nat}", "{out}", "--to", "native", "--json"),
        M("convert: HF --to hf", Usage, "{hf}", "convert", "{hf}", "{out}", "--to", "hf", "--json"),
        M("convert: --family of another checkpoint", Usage, "--family", "convert", "{hf}", "{out}", "--to", "native", "--family", "qwen3.5", "--json"),
        M("convert: --reference of another family", Inconsistent, "--reference", "convert", "{v4nat}", "{out}", "--to", "hf", "--reference", "{hf}", "--json"),
        // verify
        M("verify: missing checkpoint", Usage, "{nope}", "verify", "{nope}", "{hf}", "--json"),
        M("verify: --tolerance abc", Usage, "--tolerance", "verify", "{hf}", "{hf}", "--tolerance", "abc", "--json"),
        M("verify: --tolerance -1", Usage, "--tolerance", "verify", "{hf}", "{hf}", "--tolerance", "-1", "--json"),
        // train
        M("train: --device gpu", Usage, "--device", "train", "{nat}", "--steps", "1", "--device", "gpu", "--json"),
        M("train: --dtype fp16", Usage, "--dtype", "train", "{nat}", "--steps", "1", "--dtype", "fp16", "--json"),
        M("train: --data not JSON lists", Malformed, "{garbage}", "train", "{nat}", "--steps", "1", "--data", "{garbage}", "--json"),
        M("train: --data missing", Usage, "{nope}", "train", "{nat}", "--steps", "1", "--data", "{nope}", "--json"),
        M("train: missing checkpoint", Usage, "{nope}", "train", "{nope}", "--steps", "1", "--json"),
        M("train: --threads -3", Usage, "--threads", "train", "{nat}", "--steps", "1", "--threads", "-3", "--json"),
        M("train: --steps -1", Usage, "--steps", "train", "{nat}", "--steps", "-1", "--json"),
        M("train: no --steps", Usage, "--steps", "train", "{nat}", "--json"),
        M("train: --batch 0", Usage, "--batch", "train", "{nat}", "--steps", "1", "--batch", "0", "--json"),
        M("train: --seq-len 1", Usage, "--seq-len", "train", "{nat}", "--steps", "1", "--seq-len", "1", "--json"),
        M("train: --lr abc", Usage, "--lr", "train", "{nat}", "--steps", "1", "--lr", "abc", "--json"),
        M("train: --save-as hf without --out", Usage, "--save-as", "train", "{qwenhf}", "--steps", "1", "--save-as", "hf", "--json"),
        M("train: --save-as xyz", Usage, "--save-as", "train", "{v4hf}", "--steps", "1", "--save-as", "xyz", "--json"),
        M("train: config.json not JSON", Malformed, "{badcfg}", "train", "{badcfg}", "--steps", "1", "--json"),
        // synth
        M("synth: --family llama", Usage, "--family", "synth", "--family", "llama", "{out}"),
        M("synth: --quant fp8 for DeepSeek", Usage, "--quant", "synth", "--family", "deepseek-v3", "--quant", "fp8", "{out}"),
        M("synth: --size abc", Usage, "--size", "synth", "--family", "deepseek-v3", "--size", "abc", "{out}"),
        M("synth: --layers 0", Usage, "--layers", "synth", "--family", "deepseek-v3", "--layers", "0", "{out}"),
        // demo
        M("demo: --family llama", Usage, "--family", "demo", "--family", "llama", "--work", "{out}"),
        M("demo: --steps -1", Usage, "--steps", "demo", "--steps", "-1", "--work", "{out}"),
        M("demo: --steps abc", Usage, "--steps", "demo", "--steps", "abc", "--work", "{out}"),
        // roundtrip
        M("roundtrip: missing checkpoint", Usage, "{nope}", "roundtrip", "{nope}", "--json"),
        M("roundtrip: --part 3/2", Usage, "--part", "roundtrip", "{hf}", "--part", "3/2", "--work", "{out}", "--json"),
        M("roundtrip: --merge without --work", Usage, "--merge", "roundtrip", "{hf}", "--merge", "--json"),
        // bench
        M("bench kernels: --rows 0", Usage, "--rows", "bench", "kernels", "--rows", "0", "--json"),
        M("bench kernels: --threads -1", Usage, "--threads", "bench", "kernels", "--threads", "-1", "--json"),
        M("bench kernels: --cols 33", Usage, "--cols", "bench", "kernels", "--cols", "33", "--json"),
        M("bench convert: --size abc", Usage, "--size", "bench", "convert", "--size", "abc", "--work", "{out}", "--json"),
        M("bench convert: --repeat 0", Usage, "--repeat", "bench", "convert", "--repeat", "0", "--work", "{out}", "--json"),
        M("bench convert: --family llama", Usage, "--family", "bench", "convert", "--family", "llama", "--work", "{out}", "--json"),
        M("bench convert: --cache sometimes", Usage, "--cache", "bench", "convert", "--cache", "sometimes", "--work", "{out}", "--json"),
    };

    [OneTimeSetUp]
    public void MakeInputs()
    {
        _work = RepoPaths.NewTempDir("mistakes");
        string F(string n) => Path.Combine(RepoPaths.Fixtures, n);
        Paths["{hf}"] = F("deepseek-v3");
        Paths["{qwenhf}"] = F("qwen3.5-moe");
        Paths["{v4hf}"] = F("deepseek-v4-flash");
        Paths["{nat}"] = Path.Combine(_work, "native");
        Paths["{v4nat}"] = Path.Combine(_work, "v4-native");
        Paths["{nope}"] = Path.Combine(_work, "does-not-exist");
        Paths["{out}"] = Path.Combine(_work, "out");
        Paths["{empty}"] = Directory.CreateDirectory(Path.Combine(_work, "empty")).FullName;
        Paths["{full}"] = Directory.CreateDirectory(Path.Combine(_work, "full")).FullName;
        File.WriteAllText(Path.Combine(Paths["{full}"], "notes.txt"), "something already here\n");
        Paths["{text}"] = Path.Combine(_work, "notes.safetensors");
        File.WriteAllText(Paths["{text}"], "These are my notes, not tensors.\n");
        Paths["{garbage}"] = Path.Combine(_work, "garbage.jsonl");
        File.WriteAllText(Paths["{garbage}"], "[1, 2, 3]\n[4, 5,\n");
        Paths["{badcfg}"] = Directory.CreateDirectory(Path.Combine(_work, "bad-config")).FullName;
        File.WriteAllText(Path.Combine(Paths["{badcfg}"], "config.json"), "{\"model_type\": \"deepseek_v3\",");
        foreach (var (from, to) in new[] { ("{hf}", "{nat}"), (F("deepseek-v4-flash"), "{v4nat}") })
        {
            var r = CliRunner.Run("convert", Paths.GetValueOrDefault(from, from), Paths[to], "--to", "native", "--json");
            Assert.That(r.Code, Is.EqualTo(ExitCodes.Ok), r.Err);
        }
    }

    [OneTimeTearDown]
    public void RemoveInputs()
    {
        if (Directory.Exists(_work)) Directory.Delete(_work, true);
    }

    [TestCaseSource(nameof(Mistakes))]
    public void MistakeIsOneLineNamingTheFlagOrFileWithItsClass(Mistake m)
    {
        string[] args = m.Args.Select(a => Paths.GetValueOrDefault(a, a)).ToArray();
        string names = Paths.GetValueOrDefault(m.Names, m.Names);
        try
        {
            var (code, stdout, stderr) = CliRunner.Run(args);
            string[] lines = stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries);
            Assert.That(code, Is.Not.EqualTo(ExitCodes.Internal), $"internal error for an ordinary mistake: {stderr}");
            Assert.That(code, Is.EqualTo(m.Code), $"exit code; stderr: {stderr}");
            Assert.That(lines, Has.Length.EqualTo(1), $"exactly one stderr line: {stderr}");
            Assert.That(lines[0], Does.StartWith("mtp: "));
            Assert.That(lines[0], Does.Contain(names), "the line names the flag or file at fault");
            Assert.That(lines[0], Does.Not.Contain("System."), "no .NET type names");
            if (args.Contains("--json"))
            {
                var err = JsonNode.Parse(stdout)?["error"];
                Assert.That(err?["class"]?.GetValue<string>(), Is.EqualTo(ExitCodes.ClassName(m.Code)), $"JSON error class: {stdout}");
            }
        }
        finally
        {
            if (Directory.Exists(Paths["{out}"])) Directory.Delete(Paths["{out}"], true);
        }
    }

    [Test]
    public void DeviceCudaWithoutCudaIsAUsageErrorNamingTheFlag()
    {
        if (TorchSharp.torch.cuda.is_available())
            Assert.Ignore("this machine has CUDA, so --device cuda is not a mistake here");
        var (code, _, stderr) = CliRunner.Run("train", Paths["{nat}"], "--steps", "1", "--device", "cuda");
        Assert.That(code, Is.EqualTo(ExitCodes.Usage), stderr);
        Assert.That(stderr.Trim().Split('\n'), Has.Length.EqualTo(1), stderr);
        Assert.That(stderr, Does.StartWith("mtp: --device cuda: no CUDA device"));
    }

    [Test]
    public void MistakeTableCoversEveryCommand()
    {
        var list = Mistakes().ToList();
        Assert.That(list, Has.Count.GreaterThanOrEqualTo(30));
        foreach (string command in new[] { "inspect", "convert", "verify", "train", "synth", "demo", "bench", "roundtrip" })
            Assert.That(list.Count(m => m.Args[0] == command), Is.GreaterThanOrEqualTo(2), command);
    }
}
