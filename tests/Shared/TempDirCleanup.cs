using NUnit.Framework;
using Mtp.Tests.Shared;

/// <summary>Assembly-wide (no namespace): after the last test, passed or failed, removes the run's temporary directories.</summary>
[SetUpFixture]
public sealed class TempDirCleanup
{
    /// <summary>Removes <see cref="TempDirs.Default"/>'s run folder.</summary>
    [OneTimeTearDown]
    public void RemoveTheRunsTemporaryDirectories() => TempDirs.Default.RemoveRoot();
}
