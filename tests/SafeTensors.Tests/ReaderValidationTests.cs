using Mtp.Tests.Shared;

namespace Mtp.SafeTensors.Tests;

public class ReaderValidationTests
{
    string _dir = "";

    [SetUp] public void SetUp() => _dir = RepoPaths.NewTempDir("st-validate");
    [TearDown] public void TearDown() => Directory.Delete(_dir, true);

    SafeTensorsException OpenFails(byte[] bytes)
    {
        string p = RawFile.Write(_dir, "x.safetensors", bytes);
        var e = Assert.Throws<SafeTensorsException>(() => SafeTensorsFile.Open(p).Dispose())!;
        Assert.That(e.Message, Does.StartWith(p), "message names the file");
        Assert.That(e.Message, Does.Not.Contain("\n"), "one line");
        return e;
    }

    const string Good = "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},\"b\":{\"dtype\":\"I8\",\"shape\":[2,2],\"data_offsets\":[8,12]}}";

    [Test]
    public void AValidFileOpens()
    {
        string p = RawFile.Write(_dir, "ok.safetensors", RawFile.Build(Good, 12));
        using var f = SafeTensorsFile.Open(p);
        Assert.That(f.Tensors.Select(t => t.Name), Is.EqualTo(new[] { "a", "b" }));
        Assert.That(f.GetBytes("b").ToArray(), Is.EqualTo(new byte[] { 8 * 7 + 1, 9 * 7 + 1, 10 * 7 + 1, 11 * 7 + 1 }));
    }

    [Test]
    public void FileShorterThanLengthField() =>
        Assert.That(OpenFails(new byte[5]).Error, Is.EqualTo(SafeTensorsError.Truncated));

    [Test]
    public void HeaderLengthPastEndOfFile() =>
        Assert.That(OpenFails(RawFile.Build(Good, 12, declaredLength: 10_000)).Error, Is.EqualTo(SafeTensorsError.Truncated));

    [Test]
    public void HeaderLengthOverCap()
    {
        var e = OpenFails(RawFile.Build(Good, 12, declaredLength: 100_000_001));
        Assert.That(e.Error, Is.EqualTo(SafeTensorsError.HeaderTooLarge));
    }

    [Test]
    public void HugeHeaderLengthDoesNotAllocate() =>
        Assert.That(OpenFails(RawFile.Build(Good, 12, declaredLength: ulong.MaxValue)).Error, Is.EqualTo(SafeTensorsError.HeaderTooLarge));

    [TestCase(" {\"a\":1}")]
    [TestCase("[1,2]   ")]
    public void HeaderNotStartingWithBrace(string header) =>
        Assert.That(OpenFails(RawFile.Build(header, 0)).Error, Is.EqualTo(SafeTensorsError.HeaderNotJson));

    [Test]
    public void HeaderNotJson() =>
        Assert.That(OpenFails(RawFile.Build("{\"a\": nope", 0)).Error, Is.EqualTo(SafeTensorsError.HeaderNotJson));

    [Test]
    public void UnknownDType()
    {
        var e = OpenFails(RawFile.Build("{\"w\":{\"dtype\":\"F12\",\"shape\":[1],\"data_offsets\":[0,1]}}", 1));
        Assert.That(e.Error, Is.EqualTo(SafeTensorsError.BadDType));
        Assert.That(e.Tensor, Is.EqualTo("w"));
    }

    [Test]
    public void LowercaseDTypeIsRejected() =>
        Assert.That(OpenFails(RawFile.Build("{\"w\":{\"dtype\":\"f32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4)).Error, Is.EqualTo(SafeTensorsError.BadDType));

    [Test]
    public void OffsetsPastDataBuffer()
    {
        var e = OpenFails(RawFile.Build("{\"w\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", 8));
        Assert.That(e.Error, Is.EqualTo(SafeTensorsError.OffsetsOutOfBounds));
        Assert.That(e.Tensor, Is.EqualTo("w"));
    }

    [Test]
    public void OverlappingTensors() =>
        Assert.That(OpenFails(RawFile.Build(
            "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", 12)).Error,
            Is.EqualTo(SafeTensorsError.Overlap));

    [Test]
    public void HoleBetweenTensors() =>
        Assert.That(OpenFails(RawFile.Build(
            "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]}}", 12)).Error,
            Is.EqualTo(SafeTensorsError.Hole));

    [Test]
    public void TrailingBytesAreAHole() =>
        Assert.That(OpenFails(RawFile.Build("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 6)).Error,
            Is.EqualTo(SafeTensorsError.Hole));

    [TestCase("F32", "[3]", 0, 8)]
    [TestCase("BF16", "[2,2]", 0, 4)]
    [TestCase("F4", "[3]", 0, 2)]  // 3 nibbles is not a whole number of bytes
    public void ByteLengthMustMatchDTypeTimesShape(string dtype, string shape, int begin, int end)
    {
        var e = OpenFails(RawFile.Build($"{{\"w\":{{\"dtype\":\"{dtype}\",\"shape\":{shape},\"data_offsets\":[{begin},{end}]}}}}", end));
        Assert.That(e.Error, Is.EqualTo(SafeTensorsError.SizeMismatch));
    }

    [Test]
    public void DuplicateNames()
    {
        var e = OpenFails(RawFile.Build(
            "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8));
        Assert.That(e.Error, Is.EqualTo(SafeTensorsError.DuplicateName));
        Assert.That(e.Tensor, Is.EqualTo("a"));
    }

    [Test]
    public void NegativeAndOverflowingShapes()
    {
        Assert.That(OpenFails(RawFile.Build("{\"w\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", 4)).Error, Is.EqualTo(SafeTensorsError.BadShape));
        Assert.That(OpenFails(RawFile.Build("{\"w\":{\"dtype\":\"F32\",\"shape\":[4611686018427387904,4],\"data_offsets\":[0,4]}}", 4)).Error, Is.EqualTo(SafeTensorsError.BadShape));
    }

    [Test]
    public void MissingFields() =>
        Assert.That(OpenFails(RawFile.Build("{\"w\":{\"dtype\":\"F32\",\"shape\":[1]}}", 0)).Error, Is.EqualTo(SafeTensorsError.BadEntry));

    [Test]
    public void TruncatedDataIsCaught()
    {
        byte[] full = RawFile.Build(Good, 12);
        var e = OpenFails(full[..^3]);
        Assert.That(e.Error, Is.EqualTo(SafeTensorsError.OffsetsOutOfBounds));
        Assert.That(e.Message, Does.Contain("truncated"));
    }

    [Test]
    public void FourBitLogicalCountsAreAccepted()
    {
        string p = RawFile.Write(_dir, "f4.safetensors", RawFile.Build("{\"w\":{\"dtype\":\"F4\",\"shape\":[2,6],\"data_offsets\":[0,6]}}", 6));
        using var f = SafeTensorsFile.Open(p);
        Assert.That(f.Get("w").ElementCount, Is.EqualTo(12));
        Assert.That(f.Get("w").ByteLength, Is.EqualTo(6));
    }

    [Test]
    public void EmptyAndZeroSizedTensors()
    {
        string p = RawFile.Write(_dir, "z.safetensors", RawFile.Build(
            "{\"e\":{\"dtype\":\"F32\",\"shape\":[0,3],\"data_offsets\":[0,0]},\"s\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[0,4]}}", 4));
        using var f = SafeTensorsFile.Open(p);
        Assert.That(f.Get("e").ByteLength, Is.EqualTo(0));
        Assert.That(f.GetBytes("e").Length, Is.EqualTo(0));
        Assert.That(f.Get("s").ElementCount, Is.EqualTo(1));
    }
}
