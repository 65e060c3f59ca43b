using NUnit.Framework;

namespace Mtp.Tests.Shared;

/// <summary>Signal dispositions this test process inherited, which the mtp children it starts inherit too.</summary>
public static class InheritedSignals
{
    /// <summary>
    /// Whether SIGINT is ignored in this process (the SigIgn mask of /proc/self/status). A command started in the background
    /// by a non-interactive shell (<c>cmd &amp;</c>, nohup) ignores SIGINT, and so do its children: .NET keeps a signal that
    /// was ignored at start ignored, as Unix programs do, so such a child cannot be interrupted with SIGINT at all.
    /// </summary>
    public static bool SigIntIgnored
    {
        get
        {
            if (!OperatingSystem.IsLinux()) return false;
            foreach (string line in File.ReadLines("/proc/self/status"))
                if (line.StartsWith("SigIgn:", StringComparison.Ordinal))
                    return (Convert.ToUInt64(line["SigIgn:".Length..].Trim(), 16) & (1UL << (2 - 1))) != 0;
            return false;
        }
    }

    /// <summary>Ignores the calling test, with the reason, where a child could not receive SIGINT.</summary>
    public static void RequireSigInt()
    {
        if (SigIntIgnored)
            Assert.Ignore("SIGINT is ignored in this test process (started in the background by a non-interactive shell), so the " +
                "mtp child inherits that and cannot be interrupted with it; run the tests in the foreground to check SIGINT");
    }
}
