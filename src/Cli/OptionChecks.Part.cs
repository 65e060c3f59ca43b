using System.CommandLine;

namespace Mtp.Cli;

public static partial class OptionChecks
{
    /// <summary>A share of a split run: <c>i/n</c> with 1 &lt;= i &lt;= n ("--part must be i/n with 1 &lt;= i &lt;= n (e.g. 2/8), not '0/3'").</summary>
    public static Option<string?> PartOf(this Option<string?> option)
    {
        option.Validators.Add(r =>
        {
            if (r.Tokens.Count == 0) return;
            string v = r.Tokens[^1].Value;
            if (ParsePart(v) == null) r.AddError($"{option.Name} must be i/n with 1 <= i <= n (e.g. 2/8), not '{v}'");
        });
        return option;
    }

    /// <summary>(i, n) of "i/n", or null when it is not of that form or out of range.</summary>
    public static (int Index, int Count)? ParsePart(string text)
    {
        var bits = text.Split('/');
        return bits.Length == 2 && int.TryParse(bits[0], out int i) && int.TryParse(bits[1], out int n) && n >= 1 && i >= 1 && i <= n ? (i, n) : null;
    }
}
