using Mtp.Tests.Shared;

namespace Mtp.SafeTensors.Tests;

public class IndexValidationTests
{
    string _dir = "";

    [SetUp]
    public void SetUp()
    {
        _dir = RepoPaths.NewTempDir("st-index");
        RawFile.Write(_dir, "s1.safetensors", RawFile.Build("{\"a\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[0,2]}}", 2));
        RawFile.Write(_dir, "s2.safetensors", RawFile.Build("{\"b\":{\"dtype\":\"U8\",\"shape\":[3],\"data_offsets\":[0,3]}}", 3));
    }

    [TearDown] public void TearDown() => Directory.Delete(_dir, true);

    void Index(string weightMap) =>
        File.WriteAllText(Path.Combine(_dir, ShardIndex.FileName), "{\"metadata\":{\"total_size\":5},\"weight_map\":{" + weightMap + "}}");

    SafeTensorsException Fails()
    {
        var e = Assert.Throws<SafeTensorsException>(() => Checkpoint.Open(_dir).Dispose())!;
        Assert.That(e.Message, Does.Not.Contain("\n"));
        return e;
    }

    [Test]
    public void ConsistentIndexOpens()
    {
        Index("\"a\":\"s1.safetensors\",\"b\":\"s2.safetensors\"");
        using var ck = Checkpoint.Open(_dir);
        Assert.That(ck.Get("b").File.GetBytes("b").Length, Is.EqualTo(3));
    }

    [Test]
    public void IndexNamingAMissingShard()
    {
        Index("\"a\":\"s1.safetensors\",\"b\":\"s2.safetensors\",\"c\":\"s3.safetensors\"");
        var e = Fails();
        Assert.That(e.Error, Is.EqualTo(SafeTensorsError.MissingShard));
        Assert.That(e.Message, Does.Contain("s3.safetensors"));
    }

    [Test]
    public void IndexNamingATensorTheShardLacks()
    {
        Index("\"a\":\"s1.safetensors\",\"b\":\"s2.safetensors\",\"zz\":\"s1.safetensors\"");
        var e = Fails();
        Assert.That(e.Error, Is.EqualTo(SafeTensorsError.TensorMissingFromShard));
        Assert.That(e.Tensor, Is.EqualTo("zz"));
    }

    [Test]
    public void SameTensorInTwoShards()
    {
        RawFile.Write(_dir, "s2.safetensors", RawFile.Build(
            "{\"a\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[0,2]},\"b\":{\"dtype\":\"U8\",\"shape\":[3],\"data_offsets\":[2,5]}}", 5));
        Index("\"a\":\"s1.safetensors\",\"b\":\"s2.safetensors\"");
        var e = Fails();
        Assert.That(e.Error, Is.EqualTo(SafeTensorsError.TensorInTwoShards));
        Assert.That(e.Tensor, Is.EqualTo("a"));
    }

    [Test]
    public void DuplicateNameInWeightMap()
    {
        Index("\"a\":\"s1.safetensors\",\"a\":\"s1.safetensors\",\"b\":\"s2.safetensors\"");
        Assert.That(Fails().Error, Is.EqualTo(SafeTensorsError.DuplicateName));
    }

    [Test]
    public void ShardNameEscapingTheDirectoryIsRefused()
    {
        Index("\"a\":\"../s1.safetensors\"");
        Assert.That(Fails().Error, Is.EqualTo(SafeTensorsError.BadIndex));
    }

    [Test]
    public void CollectingModeReportsEveryProblemAndKeepsTheRest()
    {
        Index("\"a\":\"s1.safetensors\",\"b\":\"s2.safetensors\",\"c\":\"gone.safetensors\",\"d\":\"s1.safetensors\"");
        using var ck = Checkpoint.Open(_dir, collectProblems: true);
        Assert.That(ck.Problems.Select(p => p.Error), Is.EquivalentTo(new[] { SafeTensorsError.MissingShard, SafeTensorsError.TensorMissingFromShard }));
        Assert.That(ck.Contains("a") && ck.Contains("b"));
    }

    [Test]
    public void NoIndexReadsEveryFileInTheDirectory()
    {
        using var ck = Checkpoint.Open(_dir);
        Assert.That(ck.Tensors.Select(t => t.Name), Is.EqualTo(new[] { "a", "b" }));
    }
}
