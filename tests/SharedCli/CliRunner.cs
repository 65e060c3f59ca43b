using Mtp.Cli;

namespace Mtp.Tests.Shared;

/// <summary>Runs the mtp command line in-process, capturing stdout and stderr.</summary>
public static class CliRunner
{
    static readonly object Gate = new();

    public static (int Code, string Out, string Err) Run(params string[] args)
    {
        lock (Gate)
        {
            var (oldOut, oldErr) = (Console.Out, Console.Error);
            var (o, e) = (new StringWriter(), new StringWriter());
            Console.SetOut(o);
            Console.SetError(e);
            try { return (MtpCommandLine.Run(args), o.ToString(), e.ToString()); }
            finally
            {
                Console.SetOut(oldOut);
                Console.SetError(oldErr);
            }
        }
    }
}
