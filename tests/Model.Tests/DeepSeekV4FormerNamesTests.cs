using System.Text.Json.Nodes;
using Mtp.SafeTensors;
using Mtp.Tests.Shared;
using static TorchSharp.torch;

namespace Mtp.Model.Tests;

/// <summary>A DeepSeek-V4 training checkpoint written with the earlier names loads into the model under the current ones.</summary>
[TestFixture]
public class DeepSeekV4FormerNamesTests
{
    [TestCase("deepseek-v4-flash", 50)]
    [TestCase("deepseek-v4-legacy-mtp", 20)] // one main layer and one depth
    public void OldNamedCheckpointLoadsTheSameParameters(string fixture, int minRenamed)
    {
        string nat = DeepSeekV4Util.Native(fixture);
        var (old, renamed) = FormerV4Names.Write(nat, "v4-former-" + fixture);
        Assert.That(renamed, Is.GreaterThanOrEqualTo(minRenamed));
        using var a = (DeepSeekV4Model)MtpModel.Load(nat, CPU, ScalarType.Float32);
        using var b = (DeepSeekV4Model)MtpModel.Load(old, CPU, ScalarType.Float32);
        var sa = a.StateDict();
        var sb = b.StateDict();
        Assert.That(sb.Keys, Is.EquivalentTo(sa.Keys));
        foreach (var (name, t) in sa)
            Assert.That(TestUtil.F(sb[name].to(ScalarType.Float32)), Is.EqualTo(TestUtil.F(t.to(ScalarType.Float32))), name);
    }

    /// <summary>
    /// A training state saved with the old names (model tensors, optimizer moments, step counts) resumes exactly as the
    /// same state under the current names: the next step gives the same loss and the same parameters.
    /// </summary>
    [Test]
    public void OldNamedTrainingStateResumesTheSame()
    {
        var o = new TrainerOptions { Lr = 1e-2, Warmup = 1, TotalSteps = 4, Batch = 1, SeqLen = 24 };
        string cur = RepoPaths.NewTempDir("v4-former-resume");
        using (var t = DeepSeekV4Util.NewTrainer(o)) { t.Step(); t.Save(cur); }
        var (old, oldOf) = FormerV4Names.WriteWithMap(cur, "v4-former-resume-old");
        Assert.That(oldOf, Has.Count.GreaterThan(50));
        string Old(string n) => oldOf.TryGetValue(n, out var o2) ? o2 : n;
        // The rest of the directory as it is, then the optimizer state renamed the old way.
        foreach (string f in Directory.GetFiles(cur, "*", SearchOption.AllDirectories))
        {
            string rel = Path.GetRelativePath(cur, f), to = Path.Combine(old, rel);
            if (File.Exists(to) || !rel.Contains(Path.DirectorySeparatorChar)) continue;
            Directory.CreateDirectory(Path.GetDirectoryName(to)!);
            File.Copy(f, to);
        }
        string sd = Path.Combine(old, TrainingCheckpoint.StateDir), opt = Path.Combine(sd, "optimizer.safetensors");
        List<(TensorSpec, byte[])> moments;
        using (var m = Checkpoint.Open(opt))
            moments = m.Tensors.Select(t =>
            {
                int d = t.Name.IndexOf('.');
                return (new TensorSpec(t.Name[..(d + 1)] + Old(t.Name[(d + 1)..]), t.Info.DType, t.Info.Shape), t.File.GetBytes(t.Info).ToArray());
            }).ToList();
        SafeTensorsWriter.WriteFile(opt, moments);
        Assert.That(moments.Select(m => m.Item1.Name), Does.Contain("exp_avg.model.layers.1.hc_attn_fn"));
        string statePath = Path.Combine(sd, "trainer_state.json");
        var state = (JsonObject)JsonNode.Parse(File.ReadAllText(statePath))!;
        var steps = (JsonObject)state["optimizer_steps"]!;
        var renamed = new JsonObject();
        foreach (var (k, v) in steps) renamed[Old(k)] = v?.DeepClone();
        state["optimizer_steps"] = renamed;
        File.WriteAllText(statePath, state.ToJsonString());

        using var a = TrainingCheckpoint.Resume(cur, CPU);
        using var b = TrainingCheckpoint.Resume(old, CPU);
        Assert.That(b.Step().TotalLoss, Is.EqualTo(a.Step().TotalLoss));
        var sa = a.Model.StateDict();
        foreach (var (name, t) in b.Model.StateDict())
            Assert.That(TestUtil.F(t.to(ScalarType.Float32)), Is.EqualTo(TestUtil.F(sa[name].to(ScalarType.Float32))), name);
    }
}
