using Mtp.Tests.Shared;

namespace Mtp.SafeTensors.Tests;

/// <summary>
/// <see cref="SafeTensorsFile.ReleasePages"/>: a tensor read through the map stops counting in the process's file-backed
/// resident set once released (what lets train's checkpoint loading hold one tensor at a time, not every shard read).
/// </summary>
public class ReleasePagesTests
{
    static long RssFile() => File.ReadLines("/proc/self/status").Where(l => l.StartsWith("RssFile:"))
        .Select(l => long.Parse(l.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1]) * 1024).First();

    [Test]
    public void AReleasedTensorLeavesTheResidentSet()
    {
        if (!OperatingSystem.IsLinux()) Assert.Ignore("needs Linux (/proc/self/status, madvise)");
        string dir = RepoPaths.NewTempDir("st-release");
        string path = Path.Combine(dir, "model.safetensors");
        const long n = 64L << 20;
        var spec = new TensorSpec("big", DType.U8, new[] { n });
        SafeTensorsWriter.WriteFile(path, new List<(TensorSpec, byte[])> { (spec, WriterRoundTripTests.Pattern(n, 7)) });
        using var f = SafeTensorsFile.Open(path);
        var t = f.Get("big");
        long before = RssFile();
        var d = f.GetData(t);
        long sum = 0;
        for (long off = 0; off < n; off += 4096) sum += d.Slice(off, 1)[0]; // touch every page
        long touched = RssFile() - before;
        f.ReleasePages(t);
        long after = RssFile() - before;
        Assert.That(touched, Is.GreaterThan(n / 2), $"reading the tensor through the map should map it ({touched:N0} bytes; sum {sum})");
        Assert.That(after, Is.LessThan(n / 16), $"{after:N0} bytes still mapped after ReleasePages");
        Directory.Delete(dir, true);
    }
}
