using System.Runtime.InteropServices;
using System.Text.Json.Nodes;
using Mtp.Adapters;
using Mtp.SafeTensors;
using Mtp.Tests.Shared;
using TorchSharp;
using static TorchSharp.torch;

namespace Mtp.Model.Tests;

/// <summary>
/// Our model against Hugging Face transformers' own classes (issue 18): each fixture converted to the training layout
/// in F32 and loaded into our model gives the main logits and loss that transformers 5.12 computed from the same
/// conversion (<c>fixtures/X/reference/transformers_*</c>, made by <c>fixtures/generate/make_references.py</c>), and
/// the conversion holds every tensor transformers' <c>from_pretrained</c> reads. DeepSeek-V4's training names are
/// transformers' since issue 18 (docs/deepseek-v4-transformers-names.md); its legacy-MTP fixture has no references.
/// </summary>
public class TransformersParityTests
{
    static readonly string[] Fixtures = { "deepseek-v3", "deepseek-v3.2", "qwen3.5-moe", "qwen3.5-moe-fp8", "qwen3.6-moe", "qwen3-next", "glm-4.5", "glm-4.5-fp8", "deepseek-v4-flash", "glm-5" };

    /// <summary>
    /// Max abs logit difference allowed. The logits are at most 1.6 in size, so one F32 rounding is under 1e-7; the two
    /// sides sum in different orders (TorchSharp's libtorch vs Debian's torch 2.6, other kernels for attention, the
    /// gated delta rule and the expert loop), which over a few layers of K ≤ 200 sums gives errors around 1e-6 (measured
    /// 2.1e-7 DeepSeek-V3, 2.9e-7 Qwen3.5-MoE, 1.4e-6 its FP8 variant). 1e-4 leaves two orders of magnitude for that and is
    /// still far below what one wrong weight does (the perturbation test).
    /// </summary>
    const double LogitTolerance = 1e-4;

    /// <summary>Loss tolerance: the loss (~5.5, a mean of 46 cross-entropies) averages logit-sized errors; its F32 ulp is
    /// 4.8e-7 and the measured differences are 0 or 1 ulp, so 1e-5 is about 20 ulp.</summary>
    const double LossTolerance = 1e-5;

    /// <summary>Our names outside transformers' state_dict that a family may carry: MTP always; Qwen3.5's vision tower, for
    /// which the text-only <c>Qwen3_5MoeForCausalLM</c> has no module (it ignores <c>model.visual.*</c>).</summary>
    static string[] AllowedExtraPrefixes(string fixture) =>
        fixture.StartsWith("qwen", StringComparison.Ordinal) ? new[] { "mtp.", "model.visual." } : new[] { "mtp." };

    static readonly Dictionary<string, string> Converted = new();

    /// <summary>The fixture converted once per run to the training layout in F32 (do not modify it).</summary>
    static string Native(string fixture)
    {
        lock (Converted)
        {
            if (Converted.TryGetValue(fixture, out var d)) return d;
            d = RepoPaths.NewTempDir("parity-" + fixture);
            Converter.ToNative(Path.Combine(RepoPaths.Fixtures, fixture), d, new ConvertOptions { DType = ModelSource.CheckpointDType(ScalarType.Float32) });
            return Converted[fixture] = d;
        }
    }

    static string Reference(string fixture, string file) => Path.Combine(RepoPaths.Fixtures, fixture, "reference", file);

    /// <summary>transformers' ids, logits and loss for <paramref name="fixture"/>.</summary>
    static (Tensor Ids, Tensor Logits, double Loss) Expected(string fixture)
    {
        using var f = SafeTensorsFile.Open(Reference(fixture, "transformers_logits.safetensors"));
        var ids = f.Get("ids");
        Assert.That(ids.DType, Is.EqualTo(DType.I64));
        var idData = MemoryMarshal.Cast<byte, long>(f.GetBytes(ids)).ToArray();
        var logits = f.Get("logits");
        var loss = CheckpointIO.ReadFloat(f.GetBytes("loss"), f.Get("loss"));
        return (tensor(idData).view(ids.Shape), tensor(CheckpointIO.ReadFloat(f.GetBytes(logits), logits)).view(logits.Shape), loss.Single());
    }

    /// <summary>Our main logits and main loss on transformers' batch: each row one sequence, labels the next token.</summary>
    static (Tensor Logits, double Loss) Ours(MtpModel model, Tensor ids)
    {
        long b = ids.shape[0], s = ids.shape[1];
        long[] cu = Enumerable.Range(0, (int)b + 1).Select(i => i * s).ToArray();
        using var batch = new PackedBatch(ids.clone(), Packing.NextTokenLabels(ids, cu), cu);
        using var _ = no_grad();
        var loss = model.Loss(batch, 0.0);
        return (model.Forward(batch).MainLogits.to(ScalarType.Float32), loss.Main.item<float>());
    }

    static double MaxAbsDiff(Tensor a, Tensor b) => (a - b).abs().max().item<float>();

    [TestCaseSource(nameof(Fixtures))]
    public void MainLogitsAndLossEqualTransformers(string fixture)
    {
        using var scope = NewDisposeScope(); // frees every tensor here: tests that count live tensors share the process
        var (ids, want, wantLoss) = Expected(fixture);
        using var model = MtpModel.Load(Native(fixture), CPU, ScalarType.Float32);
        var (got, loss) = Ours(model, ids);
        Assert.That(got.shape, Is.EqualTo(want.shape));
        double diff = MaxAbsDiff(got, want);
        TestContext.Out.WriteLine($"{fixture}: max |logit diff| {diff:E2} (max |logit| {want.abs().max().item<float>():F3}), loss {loss:F7} vs {wantLoss:F7} (diff {Math.Abs(loss - wantLoss):E2})");
        Assert.That(diff, Is.LessThanOrEqualTo(LogitTolerance), "main logits");
        Assert.That(loss, Is.EqualTo(wantLoss).Within(LossTolerance), "main loss");
    }

    /// <summary>The comparison catches a wrong weight: scaling the final norm by 1% moves the logits past the tolerance.</summary>
    [TestCaseSource(nameof(Fixtures))]
    public void OnePercentOffFinalNormBreaksLogitParity(string fixture)
    {
        using var scope = NewDisposeScope(); // frees every tensor here: tests that count live tensors share the process
        var (ids, want, wantLoss) = Expected(fixture);
        using var model = MtpModel.Load(Native(fixture), CPU, ScalarType.Float32);
        using (no_grad()) model.StateDict()["model.norm.weight"].TimesInPlace(1.01);
        var (got, loss) = Ours(model, ids);
        Assert.That(MaxAbsDiff(got, want), Is.GreaterThan(10 * LogitTolerance));
        Assert.That(Math.Abs(loss - wantLoss), Is.GreaterThan(LossTolerance));
    }

    [TestCaseSource(nameof(Fixtures))]
    public void ConversionHoldsEveryTensorTransformersLoads(string fixture)
    {
        var load = (JsonObject)JsonNode.Parse(File.ReadAllText(Reference(fixture, "transformers_load.json")))!;
        var theirs = load["state_dict_keys"]!.AsArray().Select(n => (string)n!).ToList();
        using var ck = Checkpoint.Open(Native(fixture));
        var ours = ck.Tensors.Select(t => t.Name).ToList();
        Assert.That(KeyProblems(ours, theirs, AllowedExtraPrefixes(fixture)), Is.Empty);
        // What transformers recorded as not taken from our output is exactly our names outside its state_dict.
        Assert.That(load["checkpoint_keys_not_in_state_dict"]!.AsArray().Select(n => (string)n!),
            Is.EquivalentTo(ours.Except(theirs, StringComparer.Ordinal)));
        Assert.That(load["missing_keys"]!.AsArray(), Is.Empty, "transformers initialised nothing itself");
        Assert.That(load["unexpected_keys"]!.AsArray().Select(n => (string)n!), Has.All.StartWith("mtp."));
    }

    /// <summary>The name check reports a tensor our conversion lacks and a name outside the allowed prefixes.</summary>
    [Test]
    public void KeyCheckReportsAMissingTensorAndAnUnknownName()
    {
        var theirs = new List<string> { "model.embed_tokens.weight", "model.norm.weight", "lm_head.weight" };
        var ours = new List<string> { "model.embed_tokens.weight", "lm_head.weight", "mtp.layers.0.enorm.weight", "model.layers.9.extra" };
        Assert.That(KeyProblems(ours, theirs, new[] { "mtp." }),
            Is.EqualTo(new[] { "missing: model.norm.weight", "unexpected: model.layers.9.extra" }));
        Assert.That(KeyProblems(theirs.Append("mtp.x").ToList(), theirs, new[] { "mtp." }), Is.Empty);
    }

    /// <summary>transformers' names our output lacks, then our names outside its state_dict and the allowed prefixes.</summary>
    static List<string> KeyProblems(IReadOnlyList<string> ours, IReadOnlyList<string> theirs, string[] allowedExtraPrefixes)
    {
        var have = new HashSet<string>(ours, StringComparer.Ordinal);
        var want = new HashSet<string>(theirs, StringComparer.Ordinal);
        var problems = theirs.Where(n => !have.Contains(n)).Select(n => "missing: " + n).ToList();
        problems.AddRange(ours.Where(n => !want.Contains(n) && !allowedExtraPrefixes.Any(p => n.StartsWith(p, StringComparison.Ordinal)))
            .Select(n => "unexpected: " + n));
        return problems;
    }
}
