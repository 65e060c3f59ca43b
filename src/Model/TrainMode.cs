namespace Mtp.Model;

/// <summary>What a training run updates.</summary>
public enum TrainMode
{
    /// <summary>Every parameter: the main model and the MTP depths.</summary>
    All,
    /// <summary>Only the MTP depths (<c>mtp.*</c>); the main model is frozen.</summary>
    Mtp,
}
