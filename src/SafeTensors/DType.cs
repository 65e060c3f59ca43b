namespace Mtp.SafeTensors;

/// <summary>Element types of the safetensors format (names as they appear in headers).</summary>
public enum DType
{
    /// <summary>Boolean, one byte.</summary>
    BOOL,
    /// <summary>Unsigned 8-bit.</summary>
    U8,
    /// <summary>Signed 8-bit (also DeepSeek-V4's packed FP4 pairs).</summary>
    I8,
    /// <summary>Unsigned 16-bit.</summary>
    U16,
    /// <summary>Signed 16-bit.</summary>
    I16,
    /// <summary>Unsigned 32-bit.</summary>
    U32,
    /// <summary>Signed 32-bit.</summary>
    I32,
    /// <summary>Unsigned 64-bit.</summary>
    U64,
    /// <summary>Signed 64-bit.</summary>
    I64,
    /// <summary>IEEE half.</summary>
    F16,
    /// <summary>bfloat16.</summary>
    BF16,
    /// <summary>IEEE single.</summary>
    F32,
    /// <summary>IEEE double.</summary>
    F64,
    /// <summary>FP8 E4M3 (fn: no infinities).</summary>
    F8_E4M3,
    /// <summary>FP8 E5M2.</summary>
    F8_E5M2,
    /// <summary>Power-of-two exponent byte (OCP E8M0).</summary>
    F8_E8M0,
    /// <summary>FP8 E4M3 FNUZ variant.</summary>
    F8_E4M3FNUZ,
    /// <summary>FP8 E5M2 FNUZ variant.</summary>
    F8_E5M2FNUZ,
    /// <summary>FP4 E2M1; the shape counts logical elements, two per byte.</summary>
    F4,
    /// <summary>FP6 E2M3 (6 bits per element).</summary>
    F6_E2M3,
    /// <summary>FP6 E3M2 (6 bits per element).</summary>
    F6_E3M2,
    /// <summary>Complex of two F32.</summary>
    C64,
}

/// <summary>Facts about <see cref="DType"/> values: header names and storage sizes.</summary>
public static class DTypes
{
    static readonly Dictionary<string, DType> ByName =
        Enum.GetValues<DType>().ToDictionary(d => d.ToString(), d => d, StringComparer.Ordinal);

    /// <summary>The header spelling of <paramref name="dtype"/>.</summary>
    public static string Name(this DType dtype) => dtype.ToString();

    /// <summary>Parses a header dtype string (case-sensitive, as the format requires).</summary>
    public static bool TryParse(string name, out DType dtype) => ByName.TryGetValue(name, out dtype);

    /// <summary>Storage bits per logical element.</summary>
    public static int Bits(this DType dtype) => dtype switch
    {
        DType.F4 => 4,
        DType.F6_E2M3 or DType.F6_E3M2 => 6,
        DType.BOOL or DType.U8 or DType.I8 or DType.F8_E4M3 or DType.F8_E5M2 or DType.F8_E8M0
            or DType.F8_E4M3FNUZ or DType.F8_E5M2FNUZ => 8,
        DType.U16 or DType.I16 or DType.F16 or DType.BF16 => 16,
        DType.U32 or DType.I32 or DType.F32 => 32,
        DType.U64 or DType.I64 or DType.F64 or DType.C64 => 64,
        _ => throw new ArgumentOutOfRangeException(nameof(dtype)),
    };

    /// <summary>
    /// Bytes needed for <paramref name="elements"/> elements, or null when the bit count is not a whole
    /// number of bytes (invalid for sub-byte dtypes) or overflows.
    /// </summary>
    public static long? ByteSize(this DType dtype, long elements)
    {
        if (elements < 0) return null;
        try
        {
            long bits = checked(elements * dtype.Bits());
            return bits % 8 == 0 ? bits / 8 : null;
        }
        catch (OverflowException) { return null; }
    }
}
