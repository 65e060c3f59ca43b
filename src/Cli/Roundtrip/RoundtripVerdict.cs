using System.Text.Json.Nodes;
using Mtp.Adapters;

namespace Mtp.Cli.Roundtrip;

/// <summary>One tensor that did not come back byte for byte.</summary>
/// <param name="Name">HF tensor name.</param>
/// <param name="Detail">What differs ("bytes: first difference at element 5, max abs difference 0.25", "missing from the round trip").</param>
public sealed record TensorFailure(string Name, string Detail);

/// <summary>The outcome for one tensor group.</summary>
/// <param name="Group">The group.</param>
/// <param name="Tensors">Tensors of the group (in the original, plus any only the round trip has).</param>
/// <param name="Failures">Its tensors that are not byte-identical.</param>
public sealed record GroupResult(TensorGroup Group, int Tensors, IReadOnlyList<TensorFailure> Failures);

/// <summary>What a round trip found: the comparison of the original with its round trip, by tensor group.</summary>
/// <param name="Input">The original HF checkpoint.</param>
/// <param name="Family">Its family.</param>
/// <param name="Report">The comparison (original = A, round trip = B).</param>
/// <param name="Groups">Per-group outcome, in group order.</param>
/// <param name="Seconds">Wall time of the whole round trip (the slowest part's, for a split one).</param>
/// <param name="Stages">Seconds per stage ("to_native", "to_hf", "verify").</param>
/// <param name="Finished">When the verdict was made (UTC).</param>
public sealed record RoundtripVerdict(string Input, string Family, VerifyReport Report, IReadOnlyList<GroupResult> Groups, double Seconds,
    IReadOnlyDictionary<string, double> Stages, DateTime Finished)
{
    /// <summary>Every tensor came back byte for byte (same names, dtypes, shapes, bytes).</summary>
    public bool Identical => Report.Identical;

    /// <summary>Groups <paramref name="report"/> over the original's tensor names <paramref name="originalNames"/>.</summary>
    public static RoundtripVerdict Make(string input, string family, VerifyReport report, IEnumerable<string> originalNames, TensorGroups groups,
        double seconds, IReadOnlyDictionary<string, double> stages)
    {
        var failures = report.Differences.Select(d => new TensorFailure(d.Name, $"{d.Kind}: {d.Detail}"))
            .Concat(report.OnlyInA.Select(n => new TensorFailure(n, "missing from the round trip")))
            .Concat(report.OnlyInB.Select(n => new TensorFailure(n, "only in the round trip")))
            .ToLookup(f => groups.Of(f.Name));
        var results = originalNames.Concat(report.OnlyInB).GroupBy(groups.Of)
            .OrderBy(g => g.Key.Order)
            .Select(g => new GroupResult(g.Key, g.Count(), failures[g.Key].ToList()))
            .ToList();
        return new RoundtripVerdict(input, family, report, results, seconds, stages, DateTime.UtcNow);
    }

    /// <summary>The last line of the text report.</summary>
    public string Summary => Identical
        ? $"identical: {Units.Count(Report.Compared, "tensor")} in {Units.Count(Groups.Count, "group")} came back byte for byte ({Family}, {Seconds:F1} s)"
        : $"different: {Units.Count(Report.Differences.Count, "tensor")} {(Report.Differences.Count == 1 ? "differs" : "differ")}, {Report.OnlyInA.Count} missing from the round trip, {Report.OnlyInB.Count} only in it " +
          $"({Report.Compared} compared; failing groups: {string.Join(", ", Groups.Where(g => g.Failures.Count > 0).Select(g => g.Group.Name))})";

    /// <summary>The text report: one line per tensor that is not byte-identical, then <see cref="Summary"/>.</summary>
    public IEnumerable<string> Lines() =>
        Groups.SelectMany(g => g.Failures.Select(f => $"differs: {g.Group.Name}: {f.Name}: {f.Detail}")).Append(Summary);

    /// <summary>The --json document.</summary>
    public JsonObject ToJson(string? work, bool kept) => new()
    {
        ["ok"] = Identical, ["identical"] = Identical, ["input"] = Input, ["family"] = Family,
        ["work"] = work, ["kept"] = kept, ["seconds"] = Math.Round(Seconds, 3),
        ["stages"] = new JsonObject(Stages.Select(s => KeyValuePair.Create(s.Key, (JsonNode?)Math.Round(s.Value, 3)))),
        ["groups"] = new JsonArray(Groups.Select(g => (JsonNode)new JsonObject
        {
            ["name"] = g.Group.Name, ["tensors"] = g.Tensors, ["passed"] = g.Failures.Count == 0,
            ["failures"] = new JsonArray(g.Failures.Select(f => (JsonNode)new JsonObject { ["name"] = f.Name, ["detail"] = f.Detail }).ToArray()),
        }).ToArray()),
        ["verify"] = Report.ToJson(),
    };
}
