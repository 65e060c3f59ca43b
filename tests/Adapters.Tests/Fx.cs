using System.Text.Json.Nodes;
using Mtp.SafeTensors;
using Mtp.Tests.Shared;

namespace Mtp.Adapters.Tests;

static class Fx
{
    /// <summary>The fixtures directory (MTP_FIXTURES overrides it), or ignores the test when absent.</summary>
    public static string Dir(string name)
    {
        string root = Environment.GetEnvironmentVariable("MTP_FIXTURES") is { Length: > 0 } env ? env : RepoPaths.Fixtures;
        string d = Path.Combine(root, name);
        if (!File.Exists(Path.Combine(d, "config.json"))) Assert.Ignore($"fixture {name} not present at {d}");
        return d;
    }

    /// <summary>Copies a checkpoint into one file, without <paramref name="drop"/> and with <paramref name="add"/>.</summary>
    public static string Rewrite(string fixture, string tag, Func<string, bool>? drop = null, (TensorSpec, byte[])? add = null)
    {
        string dir = RepoPaths.NewTempDir(tag);
        using (var c = Checkpoint.Open(fixture))
        {
            var list = c.Tensors.Where(t => drop == null || !drop(t.Name))
                .Select(t => (new TensorSpec(t.Name, t.Info.DType, t.Info.Shape), t.File.GetBytes(t.Info).ToArray())).ToList();
            if (add is { } a) list.Add(a);
            SafeTensorsWriter.WriteFile(Path.Combine(dir, "model.safetensors"), list);
        }
        File.Copy(Path.Combine(fixture, "config.json"), Path.Combine(dir, "config.json"));
        return dir;
    }

    public static JsonObject Config(string dir) => (JsonObject)JsonNode.Parse(File.ReadAllText(Path.Combine(dir, "config.json")))!;
}
