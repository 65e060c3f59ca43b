using Mtp.Cli.Bench;

namespace Mtp.Cli.Tests;

/// <summary>The kernel bench of `mtp bench kernels` (a CLI harness, not part of Mtp.Quant) runs and reports every kernel.</summary>
public class KernelBenchTests
{
    [Test]
    public void SmallBenchRuns()
    {
        var r = KernelBench.Run(256, 512, 2, TimeSpan.FromMilliseconds(20));
        Assert.That(new[] { r.Fp8Bf16F32ScaleGbps, r.Fp8Bf16E8M0Gbps, r.Fp4Bf16Gbps, r.Bf16Fp8Gbps, r.MemcpyGbps, r.Fp4ExactGbps, r.Fp8ExactGbps }, Is.All.GreaterThan(0));
        Assert.That((r.Rows, r.Cols, r.Threads), Is.EqualTo((256, 512, 2)));
    }

    [Test, Explicit("measures throughput; run by hand")]
    public void FullBench()
    {
        foreach (int t in new[] { 1, Environment.ProcessorCount })
        {
            var r = KernelBench.Run(KernelBench.DefaultRows, KernelBench.DefaultCols, t, TimeSpan.FromSeconds(2));
            TestContext.Out.WriteLine(r.ToString());
            Console.WriteLine(r.ToString());
        }
    }
}
