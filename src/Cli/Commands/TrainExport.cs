using Mtp.Adapters;
using Mtp.Model;
using Mtp.SafeTensors;

namespace Mtp.Cli.Commands;

/// <summary>
/// <c>mtp train --save-as hf</c>: the trained weights written back in the source's Hugging Face format, as
/// <c>convert --to hf</c> would from the training layout (re-quantized to the source scheme; the source is the reference
/// when the run loaded an HF checkpoint, so every weight training left alone returns byte for byte).
/// </summary>
public static class TrainExport
{
    /// <summary>
    /// Writes <paramref name="trainer"/>'s model into <paramref name="outDir"/> in the HF layout. The training-layout
    /// weights pass through OUT's scratch folder (<see cref="OutputTransaction.ScratchPathFor"/>: removed afterwards, also on
    /// failure, and by the next run on OUT if this process dies); no training_state is kept.
    /// </summary>
    public static ConversionResult SaveAsHf(Trainer trainer, string outDir, string? reference, OutputRules rules)
    {
        string tmp = OutputTransaction.ScratchPathFor(outDir);
        try
        {
            var model = trainer.Model;
            var config = trainer.Config ?? throw new InvalidOperationException("the trainer has no config.json to save");
            CheckpointIO.SaveModel(model, tmp, config, CheckpointIO.ToSafeTensors(model.DType));
            TrainingCheckpoint.SaveLineage(trainer, tmp, tmp);
            return Converter.ToHf(tmp, outDir, new ConvertOptions
            {
                Reference = reference, Force = rules.Force, ForceAny = rules.ForceAny, SkipSpaceCheck = rules.SkipSpaceCheck, Cancel = rules.Cancel,
            });
        }
        finally
        {
            if (Directory.Exists(tmp)) Directory.Delete(tmp, recursive: true);
        }
    }
}
