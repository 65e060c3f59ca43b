namespace Mtp.Model;

/// <summary>Thrown when a config.json cannot be used for a family's training model.</summary>
public sealed class ModelConfigException(string message) : Exception(message);
