namespace Mtp.Model.Tests;

/// <summary>One intra-op thread: faster on a busy 2-core CI box (no OpenMP spin contention) and deterministic.</summary>
[SetUpFixture]
public class Setup
{
    [OneTimeSetUp]
    public void OneThread() => TorchSharp.torch.set_num_threads(1);
}
