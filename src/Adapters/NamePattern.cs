using System.Text;
using System.Text.RegularExpressions;

namespace Mtp.Adapters;

/// <summary>
/// A tensor-name pattern with captured indices: <c>{i}</c> (main layer), <c>{k}</c> (MTP depth),
/// <c>{e}</c> (expert), <c>{k+N}</c> (MTP depth stored at index N + k) and <c>{*}</c> (any rest of the name).
/// The same pattern both matches names and formats them, which is what makes rule tables reversible.
/// </summary>
public sealed class NamePattern
{
    readonly List<(string? Literal, string? Var, int Offset)> _parts = new();
    readonly Regex _regex;
    readonly List<(string Var, int Offset)> _groups = new();

    /// <summary>The pattern text.</summary>
    public string Text { get; }

    /// <summary>Whether it contains a <c>{*}</c> wildcard (such rules only match, they cannot be enumerated).</summary>
    public bool HasWildcard { get; }

    /// <summary>Parses a pattern.</summary>
    public NamePattern(string text)
    {
        Text = text;
        var rx = new StringBuilder("^");
        int pos = 0;
        while (pos < text.Length)
        {
            int open = text.IndexOf('{', pos);
            if (open < 0) { AddLiteral(text[pos..]); break; }
            if (open > pos) AddLiteral(text[pos..open]);
            int close = text.IndexOf('}', open);
            if (close < 0) throw new ArgumentException($"pattern '{text}': unclosed '{{'");
            string inner = text[(open + 1)..close];
            string v = inner;
            int off = 0;
            int plus = inner.IndexOf('+');
            if (plus >= 0)
            {
                // "{k+61}" or "{61+k}"
                string a = inner[..plus], b = inner[(plus + 1)..];
                if (int.TryParse(a, out off)) v = b;
                else if (int.TryParse(b, out off)) v = a;
                else throw new ArgumentException($"pattern '{text}': bad offset variable '{{{inner}}}'");
            }
            if (v is not ("i" or "k" or "e" or "*")) throw new ArgumentException($"pattern '{text}': unknown variable '{{{inner}}}'");
            if (v == "*") { HasWildcard = true; rx.Append("(.+)"); }
            else rx.Append(@"(0|[1-9][0-9]*)");
            _parts.Add((null, v, off));
            _groups.Add((v, off));
            pos = close + 1;
        }
        rx.Append('$');
        _regex = new Regex(rx.ToString(), RegexOptions.CultureInvariant);

        void AddLiteral(string s)
        {
            _parts.Add((s, null, 0));
            rx.Append(Regex.Escape(s));
        }
    }

    /// <summary>Matches a name; on success returns the captured variables (numbers already minus their offsets).</summary>
    public bool TryMatch(string name, out PatternVars vars)
    {
        vars = default;
        Match m = _regex.Match(name);
        if (!m.Success) return false;
        var v = new PatternVars();
        for (int g = 0; g < _groups.Count; g++)
        {
            var (name1, off) = _groups[g];
            string s = m.Groups[g + 1].Value;
            if (name1 == "*") { if (v.Rest != null && v.Rest != s) return false; v = v with { Rest = s }; continue; }
            if (!long.TryParse(s, out long n) || n - off < 0 || n - off > int.MaxValue) return false;
            int val = (int)(n - off);
            int? prev = name1 switch { "i" => v.I, "k" => v.K, _ => v.E };
            if (prev != null && prev != val) return false;
            v = name1 switch { "i" => v with { I = val }, "k" => v with { K = val }, _ => v with { E = val } };
        }
        vars = v;
        return true;
    }

    /// <summary>Formats the pattern with the given variables.</summary>
    public string Format(PatternVars vars)
    {
        var sb = new StringBuilder();
        foreach (var (lit, v, off) in _parts)
        {
            if (lit != null) { sb.Append(lit); continue; }
            switch (v)
            {
                case "*": sb.Append(vars.Rest ?? throw new ArgumentException($"pattern '{Text}' needs {{*}}")); break;
                case "i": sb.Append((vars.I ?? throw new ArgumentException($"pattern '{Text}' needs {{i}}")) + off); break;
                case "k": sb.Append((vars.K ?? throw new ArgumentException($"pattern '{Text}' needs {{k}}")) + off); break;
                default: sb.Append((vars.E ?? throw new ArgumentException($"pattern '{Text}' needs {{e}}")) + off); break;
            }
        }
        return sb.ToString();
    }

    /// <inheritdoc />
    public override string ToString() => Text;
}

/// <summary>Values captured by a <see cref="NamePattern"/>.</summary>
/// <param name="I">Main layer index.</param>
/// <param name="K">MTP depth (0-based).</param>
/// <param name="E">Expert index.</param>
/// <param name="Rest">What <c>{*}</c> matched.</param>
public readonly record struct PatternVars(int? I = null, int? K = null, int? E = null, string? Rest = null);
