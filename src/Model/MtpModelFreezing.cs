using static TorchSharp.torch;

namespace Mtp.Model;

/// <summary>Freezing the main model for MTP-only training (see <see cref="FreezeMain"/>).</summary>
public abstract partial class MtpModel
{
    /// <summary>Prefix of every MTP parameter name, whatever the family.</summary>
    public const string MtpPrefix = "mtp.";

    /// <summary>Whether <see cref="FreezeMain"/> was called: the main forward runs without autograd.</summary>
    public bool MainFrozen { get; private set; }

    /// <summary>Whether <paramref name="name"/> (a parameter or buffer name) belongs to an MTP depth.</summary>
    public static bool IsMtpName(string name) => name.StartsWith(MtpPrefix, StringComparison.Ordinal);

    /// <summary>
    /// Freezes the main model: every parameter outside <c>mtp.</c> stops requiring gradients (so
    /// <see cref="TrainableParameters"/> and an optimizer built from it hold the MTP depths only), and each
    /// family's forward runs the main pass (embedding, layers, final norm, main logits) under no-grad. The depths
    /// still read the shared embedding and output head: those stay frozen, but the gradient flows through the
    /// head's matmul into the depth that feeds it.
    /// </summary>
    public void FreezeMain()
    {
        foreach (var (name, p) in named_parameters())
            if (!IsMtpName(name)) p.requires_grad = false;
        MainFrozen = true;
    }

    /// <summary>
    /// Runs a family's main pass, returning its hidden state (what the first depth consumes) and main logits. When
    /// the main model is frozen it runs under no-grad in its own dispose scope, so its intermediate tensors are
    /// freed as soon as it returns instead of living until the end of the step; only the two results are kept.
    /// The pass must not leave other tensors behind that later code reads (a context built inside it, say).
    /// </summary>
    protected (Tensor Hidden, Tensor Logits) MainPass(Func<(Tensor Hidden, Tensor Logits)> pass)
    {
        if (!MainFrozen) return pass();
        using var noGrad = no_grad();
        using var scope = NewDisposeScope();
        var (hidden, logits) = pass();
        return (hidden.MoveToOuterDisposeScope(), logits.MoveToOuterDisposeScope());
    }
}
