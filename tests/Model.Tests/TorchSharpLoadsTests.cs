using TorchSharp;
using static TorchSharp.torch;

namespace Mtp.Model.Tests;

/// <summary>Proves the native TorchSharp library loads on this machine (see build/TorchSharpGlibcxxFix.targets).</summary>
public class TorchSharpLoadsTests
{
    [Test]
    public void MatmulAndBackwardRun()
    {
        using var scope = NewDisposeScope();
        var a = tensor(new float[] { 1, 2, 3, 4 }, new long[] { 2, 2 }).requires_grad_(true);
        var b = tensor(new float[] { 5, 6, 7, 8 }, new long[] { 2, 2 });
        var c = matmul(a, b);
        Assert.That(c.data<float>().ToArray(), Is.EqualTo(new float[] { 19, 22, 43, 50 }));
        c.sum().backward();
        // d(sum(a@b))/da[i,k] = sum_j b[k,j]
        Assert.That(a.grad!.data<float>().ToArray(), Is.EqualTo(new float[] { 11, 15, 11, 15 }));
    }
}
