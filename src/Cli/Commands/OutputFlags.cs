namespace Mtp.Cli.Commands;

/// <summary>Help of the output flags convert, synth and train share (the rules are <see cref="Mtp.SafeTensors.OutputFolder.CheckReplaceable"/>).</summary>
public static class OutputFlags
{
    /// <summary>--force.</summary>
    public const string ForceHelp = "Replace an existing output that is a previous checkpoint output (conversion.json, index, training_state, or config.json with .safetensors) holding nothing else";
    /// <summary>--force-any.</summary>
    public const string ForceAnyHelp = "Replace an existing output directory whatever it holds (deletes every file in it)";
    /// <summary>--no-space-check.</summary>
    public const string NoSpaceCheckHelp = "Do not compare the planned output size with the free space before writing";
}
