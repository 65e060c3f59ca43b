using Mtp.SafeTensors;
using Mtp.Tests.Shared;

namespace Mtp.Cli.Tests;

/// <summary><c>convert</c> and <c>inspect</c> on a DeepSeek-V4 checkpoint with a DSpark drafter under <c>mtp.*</c>.</summary>
public class DSparkRefusalTests
{
    static string Drafter()
    {
        string src = Path.Combine(RepoPaths.Fixtures, "deepseek-v4-flash"), dir = RepoPaths.NewTempDir("cli-dspark");
        using (var c = Checkpoint.Open(src))
        {
            var list = c.Tensors.Select(t => (new TensorSpec(t.Name, t.Info.DType, t.Info.Shape), t.File.GetBytes(t.Info).ToArray())).ToList();
            list.Add((new TensorSpec("mtp.layers.1.mlp.down_proj.weight", DType.BF16, new long[] { 2, 2 }), new byte[8]));
            SafeTensorsWriter.WriteFile(Path.Combine(dir, "model.safetensors"), list);
        }
        File.Copy(Path.Combine(src, "config.json"), Path.Combine(dir, "config.json"));
        return dir;
    }

    [Test]
    public void ConvertExitsNonZeroWithOneLineNamingFileAndTensor()
    {
        string dir = Drafter();
        var (code, _, stderr) = CliRunner.Run("convert", dir, Path.Combine(RepoPaths.NewTempDir("cli-dspark-out"), "o"), "--to", "native", "--allow-unknown");
        Assert.That(code, Is.Not.EqualTo(0));
        string[] lines = stderr.Trim().Split('\n');
        Assert.That(lines, Has.Length.EqualTo(1), stderr);
        Assert.That(lines[0], Does.Contain("model.safetensors").And.Contain("'mtp.layers.1.mlp.down_proj.weight'").And.Contain("DSpark"));
    }

    [Test]
    public void InspectListsTheDrafterAsAProblem()
    {
        var (code, stdout, _) = CliRunner.Run("inspect", "--json", Drafter());
        Assert.That(code, Is.Not.EqualTo(0));
        Assert.That(stdout, Does.Contain("DSpark"));
    }
}
