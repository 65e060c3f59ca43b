using System.Globalization;

namespace Mtp.Cli;

/// <summary>Human units for sizes and rates, and parsing of "5GB"-style sizes.</summary>
public static class Units
{
    /// <summary>"1.23 GB" (decimal units, as disks and Hugging Face count).</summary>
    public static string Bytes(double b)
    {
        string[] u = { "B", "kB", "MB", "GB", "TB" };
        int i = 0;
        while (b >= 1000 && i < u.Length - 1) { b /= 1000; i++; }
        return b.ToString(i == 0 ? "0" : "0.00", CultureInfo.InvariantCulture) + " " + u[i];
    }

    /// <summary>"1 step", "2 steps": a count with its noun in the right number (regular plurals only).</summary>
    public static string Count(long n, string noun) => n.ToString(CultureInfo.InvariantCulture) + " " + (n == 1 ? noun : noun + "s");

    /// <summary>Parses "5GB", "500MB", "1.5GiB", "1024" into bytes.</summary>
    public static long ParseSize(string text)
    {
        string s = text.Trim().ToUpperInvariant();
        (string Suffix, double Mult)[] units =
        {
            ("TIB", 1L << 40), ("GIB", 1L << 30), ("MIB", 1L << 20), ("KIB", 1L << 10),
            ("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("KB", 1e3), ("B", 1),
        };
        foreach (var (suffix, mult) in units)
            if (s.EndsWith(suffix, StringComparison.Ordinal) &&
                double.TryParse(s[..^suffix.Length], NumberStyles.Float, CultureInfo.InvariantCulture, out double v) && v >= 0)
                return (long)(v * mult);
        if (long.TryParse(s, NumberStyles.Integer, CultureInfo.InvariantCulture, out long n) && n >= 0) return n;
        throw new CliException(ExitCodes.Usage, $"cannot read size '{text}' (use e.g. 5GB, 500MB, 2GiB)");
    }
}
