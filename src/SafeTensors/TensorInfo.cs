namespace Mtp.SafeTensors;

/// <summary>One tensor's header entry: its name, element type, shape and byte range in the data buffer.</summary>
/// <param name="Name">Tensor name.</param>
/// <param name="DType">Element type.</param>
/// <param name="Shape">Dimensions (logical elements; F4 counts nibbles).</param>
/// <param name="Begin">Start offset, relative to the data buffer.</param>
/// <param name="End">End offset (exclusive), relative to the data buffer.</param>
public sealed record TensorInfo(string Name, DType DType, long[] Shape, long Begin, long End)
{
    /// <summary>Number of bytes of the tensor's data.</summary>
    public long ByteLength => End - Begin;

    /// <summary>Number of logical elements (product of the shape; 1 for a scalar).</summary>
    public long ElementCount => Shapes.Product(Shape);

    /// <summary>Shape as "[a, b]".</summary>
    public string ShapeText => Shapes.Format(Shape);
}

/// <summary>Describes a tensor to be written: name, dtype and shape; its byte size follows from them.</summary>
/// <param name="Name">Tensor name.</param>
/// <param name="DType">Element type.</param>
/// <param name="Shape">Dimensions.</param>
public sealed record TensorSpec(string Name, DType DType, long[] Shape)
{
    /// <summary>Bytes of data this tensor occupies.</summary>
    public long ByteLength => DType.ByteSize(Shapes.Product(Shape))
        ?? throw new ArgumentException($"tensor '{Name}': {Shapes.Format(Shape)} of {DType} is not a whole number of bytes");
}

/// <summary>Shape helpers.</summary>
public static class Shapes
{
    /// <summary>Product of the dimensions, overflow-checked.</summary>
    public static long Product(IReadOnlyList<long> shape)
    {
        long n = 1;
        foreach (long d in shape) n = checked(n * d);
        return n;
    }

    /// <summary>"[a, b, c]".</summary>
    public static string Format(IReadOnlyList<long> shape) => "[" + string.Join(", ", shape) + "]";
}
