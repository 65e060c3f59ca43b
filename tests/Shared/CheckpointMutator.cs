using System.Text;

namespace Mtp.Tests.Shared;

/// <summary>
/// Seeded random damage to one file of a checkpoint, as real downloads suffer it: header bit flips,
/// truncation, a rewritten length word, changed numbers and dtypes, scribbled data, deleted files, junk.
/// </summary>
public static class CheckpointMutator
{
    /// <summary>Applies one random mutation to <paramref name="path"/> in place and says what it did.</summary>
    public static string Mutate(string path, Random rng)
    {
        byte[] b = File.ReadAllBytes(path);
        bool json = path.EndsWith(".json");
        long headerEnd = json ? b.Length : Math.Min(b.Length, 8 + (long)BitConverter.ToUInt64(b, 0));
        switch (rng.Next(9))
        {
            case 0: // flip a bit inside the header
            {
                int at = rng.Next(json ? 0 : 8, (int)headerEnd);
                b[at] ^= (byte)(1 << rng.Next(8));
                File.WriteAllBytes(path, b);
                return $"bit flip at {at}";
            }
            case 1: // truncate anywhere
            {
                int len = rng.Next(0, b.Length);
                File.WriteAllBytes(path, b[..len]);
                return $"truncate to {len}";
            }
            case 2 when !json: // rewrite the header length word
            {
                ulong[] values = { 0, 1, 7, (ulong)b.Length, (ulong)b.Length - 8, 100_000_001, ulong.MaxValue, (ulong)rng.NextInt64() };
                ulong v = values[rng.Next(values.Length)];
                BitConverter.TryWriteBytes(b.AsSpan(0, 8), v);
                File.WriteAllBytes(path, b);
                return $"header length {v}";
            }
            case 3: // replace a digit in the JSON with another number
            {
                string text = Encoding.UTF8.GetString(b, json ? 0 : 8, (int)headerEnd - (json ? 0 : 8));
                var digits = Enumerable.Range(0, text.Length).Where(k => char.IsDigit(text[k])).ToList();
                if (digits.Count == 0) goto default;
                int at = digits[rng.Next(digits.Count)];
                string[] repl = { "0", "1", "2", "9", "99999999999", "-1", "1e30", "18446744073709551615", "", "0.5" };
                string r = repl[rng.Next(repl.Length)];
                string mutated = text[..at] + r + text[(at + 1)..];
                byte[] nb = Encoding.UTF8.GetBytes(mutated);
                File.WriteAllBytes(path, json ? nb : Rebuild(b, nb, (int)headerEnd));
                return $"number at {at} -> '{r}'";
            }
            case 4: // swap a dtype
            {
                string text = Encoding.UTF8.GetString(b);
                string[] dtypes = { "\"F32\"", "\"BF16\"", "\"F16\"", "\"F8_E4M3\"", "\"F8_E8M0\"", "\"I8\"", "\"U8\"", "\"F4\"", "\"I32\"", "\"X9\"" };
                string from = dtypes[rng.Next(dtypes.Length - 1)], to = dtypes[rng.Next(dtypes.Length)];
                var hits = new List<int>();
                for (int k = text.IndexOf(from, StringComparison.Ordinal); k >= 0; k = text.IndexOf(from, k + 1, StringComparison.Ordinal)) hits.Add(k);
                if (hits.Count == 0 || from.Length != to.Length) goto default;
                int idx = hits[rng.Next(hits.Count)];
                Encoding.UTF8.GetBytes(to).CopyTo(b, Encoding.UTF8.GetByteCount(text[..idx]));
                File.WriteAllBytes(path, b);
                return $"dtype {from} -> {to}";
            }
            case 5: // scribble on tensor data (NaN codes, 0xFF scales, anything)
            case 6:
            {
                if (headerEnd >= b.Length) goto default;
                int n = rng.Next(1, 8);
                for (int k = 0; k < n; k++) b[rng.Next((int)headerEnd, b.Length)] = rng.Next(3) switch { 0 => 0xFF, 1 => 0x7F, _ => (byte)rng.Next(256) };
                File.WriteAllBytes(path, b);
                return $"{n} data bytes";
            }
            case 7: // delete the file (shard, index or config)
                File.Delete(path);
                return "delete";
            default: // append junk
            {
                var junk = new byte[rng.Next(1, 64)];
                rng.NextBytes(junk);
                File.WriteAllBytes(path, b.Concat(junk).ToArray());
                return $"append {junk.Length} bytes";
            }
        }
    }

    static byte[] Rebuild(byte[] original, byte[] header, int headerEnd)
    {
        var result = new byte[8 + header.Length + (original.Length - headerEnd)];
        BitConverter.TryWriteBytes(result.AsSpan(0, 8), (ulong)header.Length);
        header.CopyTo(result, 8);
        original.AsSpan(headerEnd).CopyTo(result.AsSpan(8 + header.Length));
        return result;
    }
}
