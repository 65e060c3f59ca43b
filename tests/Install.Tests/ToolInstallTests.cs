using System.Diagnostics;
using System.Reflection;
using System.Runtime.InteropServices;
using Mtp.Tests.Shared;

namespace Mtp.Install.Tests;

/// <summary>
/// Packs src/Cli as a .NET tool (from the build the test run already made), installs it with
/// <c>dotnet tool install</c> into a temporary tool path from that local package only, and runs the installed
/// <c>mtp</c>: what a user gets from the README's install command, including TorchSharp's native fix.
/// </summary>
[TestFixture, NonParallelizable]
public class ToolInstallTests
{
    const string PackageId = "Mtp.Cli";
    static readonly TimeSpan StepTimeout = TimeSpan.FromMinutes(5);

    /// <summary>The configuration this test project (and so src/Cli and the sample, which it references) was built in.</summary>
    internal static string Configuration { get; } = typeof(ToolInstallTests).Assembly
        .GetCustomAttributes<AssemblyMetadataAttribute>().Single(a => a.Key == "Configuration").Value!;

    string work = "";
    string mtp = "";

    [OneTimeSetUp]
    public void PackAndInstall()
    {
        work = RepoPaths.NewTempDir("tool-install");
        try
        {
            string packages = Path.Combine(work, "packages");
            // --no-build: the test run built src/Cli already; the publish copy goes to the temp dir, not bin/.
            Dotnet("pack", Path.Combine(RepoPaths.Root, "src", "Cli", "Mtp.Cli.csproj"), "--no-build", "-c", Configuration,
                "-o", packages, "-p:PublishDir=" + Path.Combine(work, "publish") + "/");
            string nupkg = Directory.GetFiles(packages, PackageId + ".*.nupkg").Single();
            string version = Path.GetFileNameWithoutExtension(nupkg)[(PackageId.Length + 1)..];
            // Only the local package: a NuGet config that clears every other source, and a private package folder,
            // so neither the registry nor a stale cached copy of the same version is used.
            string config = Path.Combine(work, "nuget.config");
            File.WriteAllText(config,
                $"<configuration><packageSources><clear /><add key=\"local\" value=\"{packages}\" /></packageSources></configuration>");
            string tools = Path.Combine(work, "tools");
            Dotnet("tool", "install", PackageId, "--version", version, "--tool-path", tools, "--configfile", config);
            mtp = Path.Combine(tools, "mtp");
            Assert.That(File.Exists(mtp), Is.True, "dotnet tool install made no mtp command in " + tools);
        }
        catch
        {
            RemoveWork();
            throw;
        }
    }

    [OneTimeTearDown]
    public void RemoveWork()
    {
        if (work.Length > 0 && Directory.Exists(work)) Directory.Delete(work, true);
    }

    [Test]
    public void InstalledToolPrintsHelp()
    {
        var (code, stdout, stderr) = Run(mtp, "--help");
        Assert.That(code, Is.EqualTo(0), stderr);
        Assert.That(stdout, Does.Contain("convert").And.Contain("inspect").And.Contain("verify"));
    }

    [Test]
    public void InstalledToolInspectsAFixture()
    {
        var (code, stdout, stderr) = Run(mtp, "inspect", Path.Combine(RepoPaths.Fixtures, "deepseek-v3"));
        Assert.That(code, Is.EqualTo(0), stderr);
        Assert.That(stdout, Does.Contain("deepseek"));
    }

    /// <summary>Training loads libtorch through the packed libLibTorchSharp.so: fails where the package holds the
    /// unpatched library and the host's libstdc++ is older than GCC 13's.</summary>
    [Test]
    public void InstalledToolLoadsLibtorch()
    {
        string native = Path.Combine(work, "native");
        var (code, _, stderr) = Run(mtp, "convert", Path.Combine(RepoPaths.Fixtures, "deepseek-v3"), native, "--to", "native");
        Assert.That(code, Is.EqualTo(0), stderr);
        (code, var stdout, stderr) = Run(mtp, "train", native, "--steps", "1");
        Assert.That(code, Is.EqualTo(0), stderr);
        Assert.That(stdout + stderr, Does.Contain("loss"), "a training step ran");
    }

    internal static string DotnetHost =>
        Environment.GetEnvironmentVariable("DOTNET_HOST_PATH") is { Length: > 0 } h && File.Exists(h) ? h : "dotnet";

    void Dotnet(params string[] args)
    {
        var (code, stdout, stderr) = Run(DotnetHost, args);
        Assert.That(code, Is.EqualTo(0), $"dotnet {string.Join(' ', args)} failed:\n{stdout}\n{stderr}");
    }

    (int Code, string Out, string Err) Run(string file, params string[] args)
    {
        var psi = new ProcessStartInfo(file) { UseShellExecute = false, RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (string a in args) psi.ArgumentList.Add(a);
        psi.Environment["NUGET_PACKAGES"] = Path.Combine(work, "nuget-packages");
        psi.Environment["DOTNET_CLI_TELEMETRY_OPTOUT"] = "1";
        psi.Environment["DOTNET_NOLOGO"] = "1";
        // The tool's launcher finds the runtime through DOTNET_ROOT: the installation running this test
        // (its runtime directory is DOTNET_ROOT/shared/Microsoft.NETCore.App/VERSION/).
        psi.Environment["DOTNET_ROOT"] = Path.GetFullPath(Path.Combine(RuntimeEnvironment.GetRuntimeDirectory(), "..", "..", ".."));
        // MSBuild variables of the test run's own build must not leak into the nested dotnet pack.
        foreach (string v in new[] { "MSBuildExtensionsPath", "MSBuildSDKsPath", "MSBUILD_EXE_PATH", "VSTEST_HOST_DEBUG" })
            psi.Environment.Remove(v);
        using var p = Process.Start(psi) ?? throw new InvalidOperationException("cannot start " + file);
        Task<string> stdout = p.StandardOutput.ReadToEndAsync(), stderr = p.StandardError.ReadToEndAsync();
        if (!p.WaitForExit(StepTimeout))
        {
            p.Kill(entireProcessTree: true);
            Assert.Fail($"{file} {string.Join(' ', args)} did not finish in {StepTimeout.TotalMinutes} min");
        }
        return (p.ExitCode, stdout.Result, stderr.Result);
    }
}
