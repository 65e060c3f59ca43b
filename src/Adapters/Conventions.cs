using Mtp.SafeTensors;

namespace Mtp.Adapters;

/// <summary>
/// Checks that the files of one checkpoint follow one convention before anything is planned: a checkpoint assembled
/// from two tools (say FP8 scales as F32 in one shard and BF16 in another) is refused instead of converted half one way.
/// </summary>
public static class Conventions
{
    /// <summary>Throws an <see cref="AdapterErrorKind.Inconsistent"/> error naming both files when FP8 block scales differ in dtype between files.</summary>
    public static void Check(Checkpoint ck)
    {
        var byDType = new Dictionary<DType, TensorLocation>();
        foreach (TensorLocation t in ck.Tensors)
        {
            if (t.Info.DType != DType.F8_E4M3) continue;
            if (ScaleOf(ck, t.Name) is not TensorLocation s) continue;
            if (byDType.TryAdd(s.Info.DType, s) || byDType.Count < 2) continue;
        }
        if (byDType.Count > 1)
        {
            var (a, b) = (byDType.Values.First(), byDType.Values.Skip(1).First());
            throw new AdapterException(AdapterErrorKind.Inconsistent,
                $"{b.File.Path}: tensor '{b.Name}': FP8 scales are {b.Info.DType} here but {a.Info.DType} in {Path.GetFileName(a.File.Path)} ('{a.Name}'): files of two conventions in one checkpoint")
            { File = b.File.Path, Tensor = b.Name };
        }
    }

    /// <summary>The scale of a quantized weight, under any registered family's naming.</summary>
    static TensorLocation? ScaleOf(Checkpoint ck, string weight)
    {
        foreach (string name in FamilyRegistry.ScaleNameCandidates(weight))
            if (ck.TryGet(name, out var s)) return s;
        return null;
    }
}
