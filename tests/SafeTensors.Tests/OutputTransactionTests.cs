using Mtp.Tests.Shared;

namespace Mtp.SafeTensors.Tests;

/// <summary>
/// <see cref="OutputTransaction"/> is the one atomic-output type: a single file is replaced whole or not at all, and a
/// scratch folder beside OUT that a dead process left is removed like its temporary.
/// </summary>
public class OutputTransactionTests
{
    [Test]
    public void AFileIsReplacedWholeAndNoTemporaryRemains()
    {
        string dir = RepoPaths.NewTempDir("txn-file");
        try
        {
            string path = Path.Combine(dir, "config.json");
            File.WriteAllText(path, "old");
            OutputTransaction.WriteAllText(path, "{\"é\": 1}\n");
            Assert.That(File.ReadAllBytes(path), Is.EqualTo(new System.Text.UTF8Encoding(false).GetBytes("{\"é\": 1}\n")), "UTF-8, no byte-order mark");
            Assert.That(Directory.GetFiles(dir).Select(Path.GetFileName), Is.EqualTo(new[] { "config.json" }));
        }
        finally { Directory.Delete(dir, true); }
    }

    [Test]
    public void AFailedWriteLeavesTheOldFileAndNoTemporary()
    {
        string dir = RepoPaths.NewTempDir("txn-fail");
        try
        {
            string path = Path.Combine(dir, "plan.json");
            File.WriteAllText(path, "old");
            Assert.Throws<InvalidOperationException>(() => OutputTransaction.WriteFile(path, s =>
            {
                s.Write("half"u8);
                throw new InvalidOperationException("writer failed");
            }));
            Assert.That(File.ReadAllText(path), Is.EqualTo("old"));
            Assert.That(Directory.GetFiles(dir).Select(Path.GetFileName), Is.EqualTo(new[] { "plan.json" }));
        }
        finally { Directory.Delete(dir, true); }
    }

    [Test]
    public void ADeadProcesssScratchFolderIsRemovedAndOursKept()
    {
        string dir = RepoPaths.NewTempDir("txn-scratch");
        try
        {
            string output = Path.Combine(dir, "out");
            string mine = OutputTransaction.ScratchPathFor(output);
            string dead = output + OutputFolder.PartialSuffix + int.MaxValue + OutputFolder.ScratchSuffix; // no such process
            string other = output + OutputFolder.PartialSuffix + int.MaxValue + ".kept";
            foreach (var d in new[] { mine, dead, other }) Directory.CreateDirectory(d);
            Assert.That(mine, Is.EqualTo(OutputTransaction.TempPathFor(output) + ".scratch"));
            Assert.That(OutputFolder.RemoveStale(output), Is.EqualTo(new[] { dead }));
            Assert.That(Directory.Exists(mine) && Directory.Exists(other), Is.True);
        }
        finally { Directory.Delete(dir, true); }
    }
}
