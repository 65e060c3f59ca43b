using System.Runtime.InteropServices;
using Mtp.SafeTensors;

namespace Mtp.Cli;

/// <summary>
/// SIGINT / SIGTERM for the commands that write a checkpoint (convert, synth, train): the first signal cancels
/// <see cref="Token"/>, the command stops its workers, its output transaction removes the temporary, and the process
/// exits 130 (SIGINT) or 143 (SIGTERM) with one line. A second signal, or a signal while no command observes the token,
/// ends the process the default way.
/// </summary>
public static class Interrupt
{
    static readonly CancellationTokenSource Source = new();
    static volatile bool _observed;
    static int _exitCode;

    /// <summary>The process-wide cancellation; reading it tells the handler that the running command will stop cleanly.</summary>
    public static CancellationToken Token
    {
        get
        {
            _observed = true;
            return Source.Token;
        }
    }

    /// <summary>Whether a signal cancelled <see cref="Token"/>.</summary>
    public static bool Requested => Source.IsCancellationRequested;

    /// <summary>Registers the SIGINT and SIGTERM handlers (for the life of the returned object).</summary>
    public static IDisposable Install()
    {
        var regs = new[] { (PosixSignal.SIGINT, 130), (PosixSignal.SIGTERM, 143) }
            .Select(s => PosixSignalRegistration.Create(s.Item1, ctx => OnSignal(ctx, s.Item2))).ToList();
        return new Registrations(regs);
    }

    static void OnSignal(PosixSignalContext ctx, int code)
    {
        if (!_observed || Interlocked.CompareExchange(ref _exitCode, code, 0) != 0) return; // default action: terminate
        ctx.Cancel = true;
        Source.Cancel();
    }

    /// <summary>Prints the one line for an interrupted command and returns its exit code (130 or 143).</summary>
    public static int Report(OperationCanceledException e)
    {
        var i = e as OutputInterruptedException ?? e.InnerException as OutputInterruptedException;
        // Through the log, so that it follows the run's last log lines (the console logger writes from its own thread).
        CliOutput.Current.Error(i?.Removed != null ? $"interrupted, removed {i.Removed}"
            : i?.Left != null ? $"interrupted; could not remove {i.Left}" : "interrupted");
        return _exitCode != 0 ? _exitCode : 130;
    }

    sealed class Registrations(List<PosixSignalRegistration> regs) : IDisposable
    {
        public void Dispose() { foreach (var r in regs) r.Dispose(); }
    }
}
