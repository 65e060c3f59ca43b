using System.Text.Json;

namespace Mtp.SafeTensors;

/// <summary>Parsed safetensors header: tensors in data-offset order and the optional metadata.</summary>
/// <param name="Tensors">Entries sorted by begin offset.</param>
/// <param name="Metadata">The <c>__metadata__</c> map (empty when absent).</param>
/// <param name="HeaderLength">N, the JSON header's length in bytes.</param>
public sealed record SafeTensorsHeader(IReadOnlyList<TensorInfo> Tensors, IReadOnlyDictionary<string, string> Metadata, long HeaderLength)
{
    /// <summary>Absolute file offset where the data buffer starts (8 + N).</summary>
    public long DataStart => 8 + HeaderLength;
}

/// <summary>Strict validation of the header bytes against the format's rules.</summary>
public static class HeaderParser
{
    /// <summary>The format's cap on the declared header length.</summary>
    public const long MaxHeaderLength = 100_000_000;
    /// <summary>Cap on the rank of a tensor (no real checkpoint comes near it).</summary>
    public const int MaxRank = 32;
    /// <summary>Cap on the number of tensors in one file (the largest published shards hold a few thousand).</summary>
    public const int MaxTensors = 1_000_000;

    /// <summary>
    /// Validates the header length word against the file length before anything is allocated.
    /// <paramref name="ninth"/> is the byte after the length word (-1: unknown); a header starts with '{', so a bad length
    /// followed by anything else means another kind of file rather than a damaged header. Returns N.
    /// </summary>
    public static long CheckLength(string file, ReadOnlySpan<byte> first8, long fileLength, int ninth = -1)
    {
        if (fileLength < 8)
            throw new SafeTensorsException(SafeTensorsError.Truncated, file, null, $"file is {fileLength} bytes, shorter than the 8-byte header length field");
        ulong n = BitConverter.ToUInt64(first8);
        bool notSafeTensors = ninth >= 0 && ninth != '{';
        const string NotSafeTensors = "not a safetensors file (it does not start with a header length and a JSON header)";
        if (n > MaxHeaderLength)
            throw new SafeTensorsException(SafeTensorsError.HeaderTooLarge, file, null, notSafeTensors ? NotSafeTensors : $"header length {n} exceeds the cap of {MaxHeaderLength} bytes");
        if ((long)n > fileLength - 8)
            throw new SafeTensorsException(SafeTensorsError.Truncated, file, null, notSafeTensors ? NotSafeTensors : $"header length {n} runs past the end of the file ({fileLength} bytes): truncated?");
        return (long)n;
    }

    /// <summary>Parses and validates <paramref name="json"/> given the size of the data buffer that follows it.</summary>
    public static SafeTensorsHeader Parse(string file, ReadOnlySpan<byte> json, long dataLength)
    {
        if (json.Length == 0 || json[0] != (byte)'{')
            throw new SafeTensorsException(SafeTensorsError.HeaderNotJson, file, null, "header does not start with '{'");
        if (!System.Text.Unicode.Utf8.IsValid(json))
            throw new SafeTensorsException(SafeTensorsError.HeaderNotJson, file, null, "header is not valid UTF-8");
        JsonDocument doc;
        try
        {
            doc = JsonDocument.Parse(json.ToArray(), new JsonDocumentOptions { MaxDepth = 8 });
        }
        catch (JsonException e)
        {
            throw new SafeTensorsException(SafeTensorsError.HeaderNotJson, file, null, "header is not valid JSON: " + OneLine(e.Message));
        }
        using (doc)
        {
            if (doc.RootElement.ValueKind != JsonValueKind.Object)
                throw new SafeTensorsException(SafeTensorsError.HeaderNotJson, file, null, "header is not a JSON object");
            var metadata = new Dictionary<string, string>(StringComparer.Ordinal);
            var tensors = new List<TensorInfo>();
            var seen = new HashSet<string>(StringComparer.Ordinal);
            bool sawMetadata = false;
            foreach (JsonProperty p in doc.RootElement.EnumerateObject())
            {
                if (p.Name == "__metadata__")
                {
                    if (sawMetadata) throw new SafeTensorsException(SafeTensorsError.DuplicateName, file, null, "__metadata__ appears twice");
                    sawMetadata = true;
                    ReadMetadata(file, p.Value, metadata);
                    continue;
                }
                if (tensors.Count >= MaxTensors)
                    throw new SafeTensorsException(SafeTensorsError.BadEntry, file, null, $"header holds more than {MaxTensors} tensors (the cap)");
                if (!seen.Add(p.Name))
                    throw new SafeTensorsException(SafeTensorsError.DuplicateName, file, p.Name, "name appears twice in the header");
                tensors.Add(ReadEntry(file, p.Name, p.Value));
            }
            tensors.Sort((a, b) => a.Begin != b.Begin ? a.Begin.CompareTo(b.Begin) : a.End.CompareTo(b.End));
            CheckCoverage(file, tensors, dataLength);
            return new SafeTensorsHeader(tensors, metadata, json.Length);
        }
    }

    static void ReadMetadata(string file, JsonElement value, Dictionary<string, string> metadata)
    {
        if (value.ValueKind != JsonValueKind.Object)
            throw new SafeTensorsException(SafeTensorsError.BadEntry, file, null, "__metadata__ is not an object of strings");
        foreach (JsonProperty m in value.EnumerateObject())
        {
            if (m.Value.ValueKind != JsonValueKind.String)
                throw new SafeTensorsException(SafeTensorsError.BadEntry, file, null, $"__metadata__ value for '{m.Name}' is not a string");
            if (!metadata.TryAdd(m.Name, m.Value.GetString()!))
                throw new SafeTensorsException(SafeTensorsError.DuplicateName, file, null, $"__metadata__ key '{m.Name}' appears twice");
        }
    }

    static TensorInfo ReadEntry(string file, string name, JsonElement e)
    {
        if (e.ValueKind != JsonValueKind.Object)
            throw new SafeTensorsException(SafeTensorsError.BadEntry, file, name, "entry is not an object");
        if (!e.TryGetProperty("dtype", out JsonElement dt) || dt.ValueKind != JsonValueKind.String)
            throw new SafeTensorsException(SafeTensorsError.BadEntry, file, name, "missing string field 'dtype'");
        string dtName = dt.GetString()!;
        if (!DTypes.TryParse(dtName, out DType dtype))
            throw new SafeTensorsException(SafeTensorsError.BadDType, file, name, $"unknown dtype '{dtName}'");
        if (!e.TryGetProperty("shape", out JsonElement sh) || sh.ValueKind != JsonValueKind.Array)
            throw new SafeTensorsException(SafeTensorsError.BadEntry, file, name, "missing array field 'shape'");
        int rank = sh.GetArrayLength();
        if (rank > MaxRank)
            throw new SafeTensorsException(SafeTensorsError.BadShape, file, name, $"rank {rank} exceeds the cap of {MaxRank}");
        var shape = new long[rank];
        int i = 0;
        foreach (JsonElement d in sh.EnumerateArray())
        {
            if (d.ValueKind != JsonValueKind.Number || !d.TryGetInt64(out long v) || v < 0)
                throw new SafeTensorsException(SafeTensorsError.BadShape, file, name, $"shape {sh.GetRawText()} has a dimension that is not a non-negative integer");
            shape[i++] = v;
        }
        if (!e.TryGetProperty("data_offsets", out JsonElement off) || off.ValueKind != JsonValueKind.Array || off.GetArrayLength() != 2)
            throw new SafeTensorsException(SafeTensorsError.BadEntry, file, name, "missing field 'data_offsets' [begin, end]");
        long begin = ReadOffset(file, name, off[0]);
        long end = ReadOffset(file, name, off[1]);
        if (end < begin)
            throw new SafeTensorsException(SafeTensorsError.OffsetsOutOfBounds, file, name, $"data_offsets [{begin}, {end}] end before begin");
        long elements;
        try { elements = Shapes.Product(shape); }
        catch (OverflowException)
        {
            throw new SafeTensorsException(SafeTensorsError.BadShape, file, name, $"shape {Shapes.Format(shape)} overflows the element count");
        }
        long? expected = dtype.ByteSize(elements);
        if (expected is null)
            throw new SafeTensorsException(SafeTensorsError.SizeMismatch, file, name, $"shape {Shapes.Format(shape)} of {dtName} is not a whole number of bytes");
        if (expected != end - begin)
            throw new SafeTensorsException(SafeTensorsError.SizeMismatch, file, name, $"{dtName} {Shapes.Format(shape)} needs {expected} bytes but data_offsets [{begin}, {end}] hold {end - begin}");
        return new TensorInfo(name, dtype, shape, begin, end);
    }

    static long ReadOffset(string file, string name, JsonElement v)
    {
        if (v.ValueKind != JsonValueKind.Number || !v.TryGetInt64(out long x) || x < 0)
            throw new SafeTensorsException(SafeTensorsError.BadEntry, file, name, $"data offset {v.GetRawText()} is not a non-negative integer");
        return x;
    }

    static void CheckCoverage(string file, List<TensorInfo> sorted, long dataLength)
    {
        long pos = 0;
        foreach (TensorInfo t in sorted)
        {
            if (t.End > dataLength)
                throw new SafeTensorsException(SafeTensorsError.OffsetsOutOfBounds, file, t.Name,
                    $"data_offsets [{t.Begin}, {t.End}] run past the data buffer ({dataLength} bytes): truncated file?");
            if (t.Begin < pos)
                throw new SafeTensorsException(SafeTensorsError.Overlap, file, t.Name, $"data_offsets [{t.Begin}, {t.End}] overlap the previous tensor (ends at {pos})");
            if (t.Begin > pos)
                throw new SafeTensorsException(SafeTensorsError.Hole, file, t.Name, $"bytes [{pos}, {t.Begin}) before this tensor belong to no tensor");
            pos = t.End;
        }
        if (pos != dataLength)
            throw new SafeTensorsException(SafeTensorsError.Hole, file, null, $"bytes [{pos}, {dataLength}) at the end of the data buffer belong to no tensor");
    }

    static string OneLine(string s) => s.Replace('\n', ' ').Replace('\r', ' ');
}
