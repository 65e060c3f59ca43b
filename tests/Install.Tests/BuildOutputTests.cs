using System.Diagnostics;
using System.Text;
using System.Text.RegularExpressions;
using Mtp.Tests.Shared;

namespace Mtp.Install.Tests;

/// <summary>What the build leaves in src/Cli's output and the sample program, run as a user would.</summary>
public class BuildOutputTests
{
    static string Configuration => ToolInstallTests.Configuration;

    /// <summary>
    /// The patched libLibTorchSharp.so keeps the package file's size and timestamp, so MSBuild's copy step (which skips a
    /// file of equal size and time) leaves it alone on the next build instead of copying the original back and making the
    /// fix run again; and it is patched (or left as is where the host's libstdc++ needs no fix).
    /// </summary>
    [Test]
    public void PatchedTorchSharpLibraryKeepsThePackageTimestamp()
    {
        if (!OperatingSystem.IsLinux()) Assert.Ignore("the native fix only runs on Linux");
        string props = File.ReadAllText(Path.Combine(RepoPaths.Root, "Directory.Packages.props"));
        string version = Regex.Match(props, "Include=\"TorchSharp\" Version=\"([^\"]+)\"").Groups[1].Value;
        string cache = Environment.GetEnvironmentVariable("NUGET_PACKAGES") is { Length: > 0 } n ? n
            : Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".nuget", "packages");
        const string relative = "runtimes/linux-x64/native/libLibTorchSharp.so";
        var original = new FileInfo(Path.Combine(cache, "torchsharp", version, relative));
        var output = new FileInfo(Path.Combine(RepoPaths.Root, "src", "Cli", "bin", Configuration, "net10.0", relative));
        Assert.That(original.Exists, Is.True, original.FullName);
        Assert.That(output.Exists, Is.True, output.FullName);
        Assert.That(output.Length, Is.EqualTo(original.Length), "the patch changes flags only");
        Assert.That(output.LastWriteTimeUtc, Is.EqualTo(original.LastWriteTimeUtc), "patched copy keeps the package's timestamp");
        bool hostNeedsFix = !HostLibStdCxxDefines("GLIBCXX_3.4.32");
        Assert.That(File.ReadAllBytes(output.FullName).SequenceEqual(File.ReadAllBytes(original.FullName)), Is.EqualTo(!hostNeedsFix),
            hostNeedsFix ? "the output copy is patched" : "no patch where the host defines GLIBCXX_3.4.32");
    }

    [Test]
    public void SampleRoundTripsAFixture()
    {
        string work = RepoPaths.NewTempDir("sample");
        try
        {
            string dll = Path.Combine(RepoPaths.Root, "samples", "RoundTrip", "bin", Configuration, "net10.0", "RoundTrip.dll");
            var psi = new ProcessStartInfo(ToolInstallTests.DotnetHost) { UseShellExecute = false, RedirectStandardOutput = true, RedirectStandardError = true };
            foreach (string a in new[] { dll, Path.Combine(RepoPaths.Fixtures, "deepseek-v3"), Path.Combine(work, "out") }) psi.ArgumentList.Add(a);
            using var p = Process.Start(psi)!;
            Task<string> stdout = p.StandardOutput.ReadToEndAsync(), stderr = p.StandardError.ReadToEndAsync();
            Assert.That(p.WaitForExit(TimeSpan.FromMinutes(2)), Is.True, "sample finished");
            Assert.That(p.ExitCode, Is.EqualTo(0), stderr.Result);
            Assert.That(stdout.Result, Does.Contain("identical: "));
        }
        finally { Directory.Delete(work, true); }
    }

    static bool HostLibStdCxxDefines(string version)
    {
        foreach (string path in new[] { "/usr/lib/x86_64-linux-gnu/libstdc++.so.6", "/usr/lib/aarch64-linux-gnu/libstdc++.so.6",
                     "/usr/lib64/libstdc++.so.6", "/usr/lib/libstdc++.so.6", "/lib/x86_64-linux-gnu/libstdc++.so.6" })
            if (File.Exists(path)) return File.ReadAllBytes(path).AsSpan().IndexOf(Encoding.ASCII.GetBytes(version + "\0")) >= 0;
        return false;
    }
}
