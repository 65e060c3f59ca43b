using System.CommandLine;
using System.CommandLine.Parsing;
using System.Globalization;
using System.Text.RegularExpressions;
using Mtp.Adapters;
using Mtp.Adapters.Synthetic;

namespace Mtp.Cli;

/// <summary>
/// Flag checks shared by every command. They run while the command line is parsed, so a mistaken value is a usage
/// error (exit 2) naming the flag, with the same wording in every command, before any work starts.
/// </summary>
public static partial class OptionChecks
{
    /// <summary>Rejects integers below <paramref name="min"/> ("--threads must be >= 0, not -3").</summary>
    public static Option<int> AtLeast(this Option<int> option, int min)
    {
        option.Validators.Add(r =>
        {
            if (TryValue(r, out int v) && v < min) r.AddError($"{option.Name} must be >= {min}, not {v}");
        });
        return option;
    }

    /// <summary>Rejects integers below <paramref name="min"/>; absent is fine.</summary>
    public static Option<int?> AtLeast(this Option<int?> option, int min)
    {
        option.Validators.Add(r =>
        {
            if (TryValue(r, out int? n) && n is int v && v < min) r.AddError($"{option.Name} must be >= {min}, not {v}");
        });
        return option;
    }

    /// <summary>Rejects NaN, infinities and values below <paramref name="min"/>.</summary>
    public static Option<double> AtLeast(this Option<double> option, double min)
    {
        option.Validators.Add(r =>
        {
            if (TryValue(r, out double v) && (!double.IsFinite(v) || v < min)) r.AddError($"{option.Name} must be a number >= {min.ToString(CultureInfo.InvariantCulture)}, not {v.ToString(CultureInfo.InvariantCulture)}");
        });
        return option;
    }

    /// <summary>Rejects NaN, infinities and values below <paramref name="min"/>; absent is fine.</summary>
    public static Option<double?> AtLeast(this Option<double?> option, double min)
    {
        option.Validators.Add(r =>
        {
            if (TryValue(r, out double? n) && n is double v && (!double.IsFinite(v) || v < min))
                r.AddError($"{option.Name} must be a number >= {min.ToString(CultureInfo.InvariantCulture)}, not {v.ToString(CultureInfo.InvariantCulture)}");
        });
        return option;
    }

    // A value that does not convert is left to the parser, which reports it (see Friendly); checks apply to the rest.
    static bool TryValue<T>(OptionResult r, out T value)
    {
        try
        {
            value = r.GetValueOrDefault<T>();
            return true;
        }
        catch (InvalidOperationException)
        {
            value = default!;
            return false;
        }
    }

    /// <summary>
    /// Accepts only the listed values, in one line: "--dtype must be bf16 or f32, not 'fp16'". An entry
    /// "bf16|bfloat16" accepts both spellings and shows the first.
    /// </summary>
    public static T OneOf<T>(this T option, params string[] allowed) where T : Option => OneOf(option, StringComparer.Ordinal, allowed);

    /// <summary><see cref="OneOf{T}(T, string[])"/> for options whose command reads the value in any case.</summary>
    public static T OneOfIgnoringCase<T>(this T option, params string[] allowed) where T : Option => OneOf(option, StringComparer.OrdinalIgnoreCase, allowed);

    static T OneOf<T>(T option, StringComparer comparer, string[] allowed) where T : Option
    {
        var accepted = allowed.SelectMany(a => a.Split('|')).ToHashSet(comparer);
        var shown = allowed.Select(a => a.Split('|')[0]).ToList();
        option.HelpName ??= string.Join('|', shown); // help shows "--dtype <bf16|f32>", not "--dtype <dtype>"
        option.Validators.Add(r =>
        {
            if (r.Tokens.Count == 0) return;
            string v = r.Tokens[^1].Value;
            if (!accepted.Contains(v)) r.AddError($"{option.Name} must be {Alternatives(shown)}, not '{v}'");
        });
        return option;
    }

    /// <summary>A size such as 5GB, 500MB or 2GiB (see <see cref="Units.ParseSize"/>); <paramref name="positive"/>: not 0.</summary>
    public static T Size<T>(this T option, bool positive = true) where T : Option
    {
        option.Validators.Add(r =>
        {
            if (r.Tokens.Count == 0) return;
            string v = r.Tokens[^1].Value;
            long bytes;
            try { bytes = Units.ParseSize(v); }
            catch (CliException) { r.AddError($"{option.Name} takes a size such as 5GB, 500MB or 2GiB, not '{v}'"); return; }
            if (positive && bytes <= 0) r.AddError($"{option.Name} must be a positive size, not '{v}'");
        });
        return option;
    }

    /// <summary>A torch device spelling: <c>cpu</c>, <c>cuda</c> or <c>cuda:N</c>.</summary>
    public static Option<string> Device(this Option<string> option)
    {
        option.HelpName ??= "cpu|cuda|cuda:N";
        option.Validators.Add(r =>
        {
            if (r.Tokens.Count == 0) return;
            string v = r.Tokens[^1].Value;
            if (!DeviceSpelling().IsMatch(v)) r.AddError($"{option.Name} must be cpu, cuda or cuda:N, not '{v}'");
        });
        return option;
    }

    /// <summary>
    /// A family id convert reads (<see cref="Families.All"/>, or a model_type spelling <see cref="Families.Normalize"/> knows),
    /// with the ids shown in help.
    /// </summary>
    public static Option<string?> Family(this Option<string?> option)
    {
        option.HelpName ??= string.Join('|', Families.All);
        option.Validators.Add(r =>
        {
            if (r.Tokens.Count == 0) return;
            string v = r.Tokens[^1].Value;
            if (Families.Normalize(v) is null) r.AddError($"{option.Name} must be {Alternatives(Families.All)}, not '{v}'");
        });
        return option;
    }

    /// <summary>
    /// A family id for a command that synthesizes its checkpoint (synth, demo, bench convert): every id convert reads is
    /// known, and one without a synthetic layout is refused with the reason rather than as an unknown name.
    /// </summary>
    /// <remarks>The command reads the value through <see cref="Families.Normalize"/>, as convert does.</remarks>
    public static Option<string> SynthFamily(this Option<string> option, string command)
    {
        option.HelpName ??= string.Join('|', SynthModel.Families);
        option.Validators.Add(r =>
        {
            if (r.Tokens.Count == 0) return;
            string v = r.Tokens[^1].Value;
            string? known = Families.Normalize(v);
            if (known is not null && SynthModel.Families.Contains(known)) return;
            if (known is not null)
                r.AddError($"{option.Name} {v}: {command} cannot synthesize {known} checkpoints (there is no synthetic {known} layout yet; " +
                    $"it makes {Alternatives(SynthModel.Families)}); {(Trainable(known) ? "convert, inspect, verify and train" : "convert, inspect and verify")} read {known} checkpoints");
            else r.AddError($"{option.Name} must be {Alternatives(SynthModel.Families)}, not '{v}'");
        });
        return option;
    }

    /// <summary>Whether a TorchSharp model trains <paramref name="familyId"/> (MiMo, say, converts but has no model).</summary>
    static bool Trainable(string familyId) => Mtp.Model.ModelRegistry.Families.Any(f => f.Id == familyId);

    [GeneratedRegex(@"^(cpu|cuda(:\d+)?)$", RegexOptions.IgnoreCase)]
    private static partial Regex DeviceSpelling();

    /// <summary>"a, b or c".</summary>
    public static string Alternatives(IReadOnlyList<string> values) =>
        values.Count == 1 ? values[0] : string.Join(", ", values.Take(values.Count - 1)) + " or " + values[^1];

    [GeneratedRegex(@"^Cannot parse argument '(?<value>.*)' for option '(?<option>[^']+)' as expected type '(?<type>[^']+)'\.?$", RegexOptions.Singleline)]
    private static partial Regex TypeError();

    [GeneratedRegex(@"^Argument '(?<value>.*)' not recognized\. Must be one of:(?<list>.*)$", RegexOptions.Singleline)]
    private static partial Regex ChoiceError();

    /// <summary>
    /// A parser message in the project's words and on one line: a value of the wrong type names the flag and what it
    /// takes ("--tolerance takes a number, not 'abc'") instead of a .NET type name.
    /// </summary>
    public static string Friendly(string message)
    {
        if (TypeError().Match(message) is { Success: true } t)
        {
            string type = t.Groups["type"].Value;
            string what = type.Contains("Double", StringComparison.Ordinal) || type.Contains("Single", StringComparison.Ordinal) ? "a number"
                : type.Contains("Int", StringComparison.Ordinal) ? "a whole number"
                : type.Contains("Boolean", StringComparison.Ordinal) ? "true or false" : "another kind of value";
            return $"{t.Groups["option"].Value} takes {what}, not '{t.Groups["value"].Value}'";
        }
        if (ChoiceError().Match(message) is { Success: true } c)
        {
            var list = c.Groups["list"].Value.Split(new[] { '\n', '\r', '\t' }, StringSplitOptions.RemoveEmptyEntries).Select(x => x.Trim().Trim('\'')).Where(x => x.Length > 0).ToList();
            return $"'{c.Groups["value"].Value}' is not one of {Alternatives(list)}";
        }
        return string.Join(' ', message.Split(new[] { '\n', '\r', '\t' }, StringSplitOptions.RemoveEmptyEntries).Select(x => x.Trim()));
    }
}
