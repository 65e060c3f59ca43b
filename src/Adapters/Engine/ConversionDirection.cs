namespace Mtp.Adapters;

/// <summary>Which way a conversion goes.</summary>
internal enum ConversionDirection
{
    /// <summary>Hugging Face checkpoint -> training layout.</summary>
    ToNative,
    /// <summary>Training layout -> Hugging Face checkpoint.</summary>
    ToHf,
}

/// <summary>The names a direction has in reports, manifests and log lines.</summary>
internal static class ConversionDirections
{
    /// <summary>"to-native" or "to-hf", as conversion.json records it.</summary>
    public static string Name(this ConversionDirection d) => d == ConversionDirection.ToNative ? "to-native" : "to-hf";
}
