using Mtp.Model.Qwen;
using TorchSharp;
using static TorchSharp.torch;

namespace Mtp.Model.Tests;

/// <summary>
/// Packed training equals per-document training, in every family: a document's main and MTP logits are the same
/// whether it is alone in its row or packed with another document (cu_seqlens), before it or after it. They are
/// compared to 1e-6 of the logits' magnitude, not bit for bit: the masked terms of the other document add exact zeros,
/// but libtorch's vectorised reductions (softmax sums, matmuls over the key axis) split a row into SIMD blocks and a
/// scalar tail by its length, so a longer row sums the same terms in another order (measured: up to 5 float ulps in
/// Qwen3-Next, bit-identical in the DeepSeek-V3 tiny model). A leak from the other document, or a choice that depends
/// on the row (the V4 indexer's ties before it kept the earlier entry: 7.5e-3), moves logits by orders of magnitude more.
/// </summary>
public class PackedRowTests
{
    /// <summary>Main logits then each depth's, [len, V] as doubles, of positions [from, from+len) of row 0.</summary>
    static double[][] Logits(MtpModel m, long[] ids, long[] cu, long from, long len)
    {
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        var row = new long[1, ids.Length];
        for (int i = 0; i < ids.Length; i++) row[0, i] = ids[i];
        using var batch = TestUtil.Batch(row, cu);
        var o = m.Forward(batch);
        return new[] { o.MainLogits }.Concat(o.MtpLogits)
            .Select(l => l[0].narrow(0, from, len).to(ScalarType.Float64).contiguous().data<double>().ToArray()).ToArray();
    }

    static double MaxDiff(double[] x, double[] y) => x.Zip(y).Max(p => Math.Abs(p.First - p.Second));

    /// <summary>
    /// Document A (length a) alone, packed first as [A, B] and packed second as [B, A]: A's logits agree to 1e-6 of
    /// their largest magnitude. Control: with B and A as one sequence A's logits do change, so the comparison sees
    /// what the other document would leak.
    /// </summary>
    static void AssertDocumentIndependentOfRow(MtpModel m, int a, int b, int vocab, int seed)
    {
        var rng = new Random(seed);
        long[] docA = Enumerable.Range(0, a).Select(_ => (long)rng.Next(vocab)).ToArray();
        long[] docB = Enumerable.Range(0, b).Select(_ => (long)rng.Next(vocab)).ToArray();
        var alone = Logits(m, docA, new long[] { 0, a }, 0, a);
        var first = Logits(m, docA.Concat(docB).ToArray(), new long[] { 0, a, a + b }, 0, a);
        var second = Logits(m, docB.Concat(docA).ToArray(), new long[] { 0, b, a + b }, b, a);
        var joined = Logits(m, docB.Concat(docA).ToArray(), new long[] { 0, a + b }, b, a);
        Assert.That(alone.Length, Is.EqualTo(1 + m.MtpDepthCount));
        for (int i = 0; i < alone.Length; i++)
        {
            string what = i == 0 ? "main logits" : $"MTP depth {i} logits";
            double scale = Math.Max(1, alone[i].Max(Math.Abs)), dFirst = MaxDiff(first[i], alone[i]), dSecond = MaxDiff(second[i], alone[i]);
            TestContext.Out.WriteLine($"{m.Family} {what}: max |logit| {scale:G3}, packed first {dFirst:G3}, packed second {dSecond:G3}");
            Assert.That(dFirst, Is.LessThanOrEqualTo(1e-6 * scale), $"{m.Family}: {what} of a {a}-token document packed before {b} tokens differ from it alone");
            Assert.That(dSecond, Is.LessThanOrEqualTo(1e-6 * scale), $"{m.Family}: {what} of a {a}-token document packed after {b} tokens differ from it alone");
            Assert.That(MaxDiff(joined[i], alone[i]), Is.GreaterThan(1e-3 * scale), $"{m.Family}: control, {what} as the tail of one longer sequence");
        }
    }

    [Test]
    public void DeepSeekV3DocumentIsIndependentOfItsRow()
    {
        using var m = DeepSeekV3Model.Load(TestUtil.Tiny(2), CPU, ScalarType.Float32);
        AssertDocumentIndependentOfRow(m, 37, 29, m.VocabSize, 3);
    }

    [Test]
    public void Glm45DocumentIsIndependentOfItsRow()
    {
        using var m = MtpModel.Load(TestUtil.Native("glm-4.5"), CPU, ScalarType.Float32);
        AssertDocumentIndependentOfRow(m, 37, 29, m.VocabSize, 3);
    }

    /// <summary>
    /// The DeepSeek-V3.2 fixture keeps index_topk 8 keys per query: a 37-token document's queries choose 8 of up to 37
    /// keys, with exact ties after relu; the choice must not depend on the other document in the row.
    /// </summary>
    [Test]
    public void DeepSeekV32DocumentIsIndependentOfItsRowAlsoWhereTheIndexerSelects()
    {
        using var m = (DeepSeekV3Model)MtpModel.Load(TestUtil.Native("deepseek-v3.2"), CPU, ScalarType.Float32);
        Assert.That(m.Config.Indexer!.TopK, Is.LessThan(37), "the document must have more keys than index_topk");
        AssertDocumentIndependentOfRow(m, 37, 29, m.VocabSize, 3);
    }

    /// <summary>
    /// The fixture has 2 indexer heads and index_topk 16 on its ratio-4 layer: an 83-token document has 20 compressed
    /// entries, so from position 67 on the indexer chooses 16 of up to 20 whose scores after relu are often exactly
    /// equal. Ties must go the same way in a row of one document as in a row of two (issue 17: 83 + 77 tokens).
    /// </summary>
    [Test]
    public void DeepSeekV4DocumentIsIndependentOfItsRowAlsoWhereTheIndexerHasTies()
    {
        using var m = DeepSeekV4Model.Load(DeepSeekV4Util.Native(), CPU, ScalarType.Float32);
        Assert.That(m.Config.IndexTopk, Is.LessThan(83 / 4), "the document must have more compressed entries than index_topk");
        AssertDocumentIndependentOfRow(m, 83, 77, m.VocabSize, 5);
    }

    [TestCase(DeltaRuleMode.Chunked)]
    [TestCase(DeltaRuleMode.Recurrent)]
    public void Qwen35MoeDocumentIsIndependentOfItsRow(DeltaRuleMode mode)
    {
        using var m = QwenTestUtil.Load("qwen3.5-moe", mode);
        m.ChunkSize = 8;   // several chunks per document, the boundary inside a chunk
        AssertDocumentIndependentOfRow(m, 29, 21, m.VocabSize, 7);
    }

    [Test]
    public void Qwen3NextDocumentIsIndependentOfItsRow()
    {
        using var m = QwenNextTests.RandomModel(seed: 4);
        m.ChunkSize = 8;
        AssertDocumentIndependentOfRow(m, 29, 21, m.VocabSize, 9);
    }
}
