using Mtp.Tests.Shared;

namespace Mtp.SafeTensors.Tests;

/// <summary><see cref="Checkpoint.WithNames"/>: the same bytes under other names, and two tensors given one name refused.</summary>
[TestFixture]
public class CheckpointRenameTests
{
    static string Write()
    {
        string dir = RepoPaths.NewTempDir("rename");
        SafeTensorsWriter.WriteFile(Path.Combine(dir, "model.safetensors"), new[]
        {
            (new TensorSpec("a", DType.F32, new long[] { 2 }), new byte[] { 0, 0, 128, 63, 0, 0, 0, 64 }),
            (new TensorSpec("b", DType.F32, new long[] { 1 }), new byte[] { 0, 0, 64, 64 }),
        });
        return dir;
    }

    [Test]
    public void RenamedTensorsKeepTheirBytesAndOrder()
    {
        var c = Checkpoint.Open(Write());
        using var r = c.WithNames(n => n == "a" ? "x.a" : null);
        Assert.That(r.Tensors.Select(t => t.Name), Is.EqualTo(new[] { "x.a", "b" }));
        Assert.That(r.Contains("a"), Is.False);
        Assert.That(r.GetBytes("x.a"), Is.EqualTo(new byte[] { 0, 0, 128, 63, 0, 0, 0, 64 }));
        Assert.That(r.GetBytes("b"), Is.EqualTo(new byte[] { 0, 0, 64, 64 }));
    }

    [Test]
    public void TwoTensorsUnderOneNameAreRefusedNamingBoth()
    {
        using var c = Checkpoint.Open(Write());
        var e = Assert.Throws<SafeTensorsException>(() => c.WithNames(n => n == "b" ? "a" : null))!;
        Assert.That(e.Error, Is.EqualTo(SafeTensorsError.DuplicateName));
        Assert.That(e.Tensor, Is.EqualTo("a"));
        Assert.That(e.Message, Does.Contain("'a'").And.Contain("'b'"));
    }
}

static class CheckpointBytes
{
    /// <summary>The stored bytes of tensor <paramref name="name"/>.</summary>
    public static byte[] GetBytes(this Checkpoint c, string name)
    {
        var loc = c.Get(name);
        return loc.File.GetBytes(loc.Info).ToArray();
    }
}
