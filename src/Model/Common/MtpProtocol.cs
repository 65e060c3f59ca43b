using TorchSharp;
using static TorchSharp.torch;

namespace Mtp.Model;

/// <summary>
/// The MTP protocol, run once for every family: the main pass, then per depth k the ids (and labels) rolled left by k
/// per packed sequence and one <see cref="MtpDepthStep"/>. A family supplies its context, its main stack with head, and
/// its depths' parts (<see cref="IMtpDepth{TContext}"/>); anything else it needs (V4's hyper-connection streams, say)
/// travels in the state its depths pass on.
/// </summary>
/// <typeparam name="TContext">The family's per-forward context; disposed after the forward when it is disposable.</typeparam>
public abstract class MtpModel<TContext> : MtpModel where TContext : class
{
    /// <summary>Creates the base with the module name, parameter dtype and device.</summary>
    protected MtpModel(string name, ScalarType dtype, Device device) : base(name, dtype, device)
    {
    }

    /// <summary>The context of a packed batch [rows, seqLen] with in-sequence positions [rows, seqLen].</summary>
    protected abstract TContext CreateContext(long[] cu, long rows, long seqLen, Tensor positions);

    /// <summary>The main stack and head: the state the first depth reads and the main logits.</summary>
    protected abstract (Tensor Hidden, Tensor Logits) MainForward(Tensor ids, TContext ctx);

    /// <summary>The parts of depth <paramref name="index"/> (0-based), bound to the shared embedding and head.</summary>
    protected abstract IMtpDepth<TContext> DepthAt(int index);

    /// <summary>
    /// Main and MTP logits. Depth k consumes ids rolled left by k per sequence (tail 0) at the batch's own in-sequence
    /// positions (see <see cref="MtpModel.Forward"/>) and the state depth k-1 passed on; its labels are rolled the same
    /// way (tail -100).
    /// </summary>
    public sealed override ModelOutput Forward(PackedBatch batch)
    {
        long b = batch.InputIds.shape[0], s = batch.InputIds.shape[1];
        Packing.Validate(batch.CuSeqlens, b, s);
        var ids = batch.InputIds.to(ScalarType.Int64, Device);
        var labels = batch.Labels.to(ScalarType.Int64, Device);
        var positions = tensor(Packing.Positions(batch.CuSeqlens), device: Device).view(b, s);
        var ctx = CreateContext(batch.CuSeqlens, b, s, positions);
        try
        {
            var (h, main) = MainPass(() => MainForward(ids, ctx));
            var logits = new List<Tensor>();
            var mtpLabels = new List<Tensor>();
            for (int k = 1; k <= MtpDepthCount; k++)
            {
                var rolledIds = Packing.Roll(ids, batch.CuSeqlens, k, 0);
                (h, var lk) = MtpDepthStep.Run(DepthAt(k - 1), rolledIds, h, ctx);
                logits.Add(lk);
                mtpLabels.Add(Packing.Roll(labels, batch.CuSeqlens, k, Packing.IgnoreIndex));
            }
            return new ModelOutput(main, logits, mtpLabels);
        }
        finally
        {
            (ctx as IDisposable)?.Dispose();
        }
    }
}
