namespace Mtp.SafeTensors;

/// <summary>The kinds of problem the strict reader and the checkpoint loader detect.</summary>
public enum SafeTensorsError
{
    /// <summary>The file ends before the header or the data it declares.</summary>
    Truncated,
    /// <summary>The declared header length exceeds the 100,000,000-byte cap.</summary>
    HeaderTooLarge,
    /// <summary>The header is not a JSON object starting with '{'.</summary>
    HeaderNotJson,
    /// <summary>A tensor entry is malformed (missing field, wrong JSON type, too many entries or dimensions).</summary>
    BadEntry,
    /// <summary>Unknown dtype string.</summary>
    BadDType,
    /// <summary>Shape with a negative dimension or an element count that overflows.</summary>
    BadShape,
    /// <summary>data_offsets past the end of the data buffer.</summary>
    OffsetsOutOfBounds,
    /// <summary>Two tensors' byte ranges overlap.</summary>
    Overlap,
    /// <summary>Bytes of the data buffer that no tensor covers.</summary>
    Hole,
    /// <summary>end - begin does not equal the size implied by dtype and shape.</summary>
    SizeMismatch,
    /// <summary>A tensor name appears twice in one header or index.</summary>
    DuplicateName,
    /// <summary>The index is malformed.</summary>
    BadIndex,
    /// <summary>The index names a shard file that does not exist.</summary>
    MissingShard,
    /// <summary>The index maps a tensor to a shard that lacks it.</summary>
    TensorMissingFromShard,
    /// <summary>A shard holds a tensor that the index does not list (or lists elsewhere).</summary>
    TensorNotInIndex,
    /// <summary>The same tensor is stored in two shards.</summary>
    TensorInTwoShards,
    /// <summary>A tensor looked up by name does not exist.</summary>
    TensorNotFound,
    /// <summary>The path holds no safetensors file.</summary>
    NoCheckpoint,
    /// <summary>config.json is not a valid JSON object (or is too large).</summary>
    BadConfig,
    /// <summary>An operating-system I/O failure.</summary>
    Io,
}

/// <summary>A malformed or inconsistent checkpoint: one line naming the file and (where known) the tensor.</summary>
public sealed class SafeTensorsException : Exception
{
    /// <summary>What kind of problem this is.</summary>
    public SafeTensorsError Error { get; }
    /// <summary>The file concerned.</summary>
    public string File { get; }
    /// <summary>The tensor concerned, if any.</summary>
    public string? Tensor { get; }

    /// <summary>Creates the exception; the message is prefixed with the file (and tensor).</summary>
    public SafeTensorsException(SafeTensorsError error, string file, string? tensor, string detail, Exception? inner = null)
        : base(Compose(file, tensor, detail), inner)
    {
        Error = error;
        File = file;
        Tensor = tensor;
    }

    static string Compose(string file, string? tensor, string detail) =>
        tensor is null ? $"{file}: {detail}" : $"{file}: tensor '{tensor}': {detail}";
}
