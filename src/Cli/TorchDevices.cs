using System.Globalization;
using TorchSharp;

namespace Mtp.Cli;

/// <summary>The --device and --threads handling shared by the commands that run a model (train, eval).</summary>
public static class TorchDevices
{
    /// <summary>
    /// The torch device named by <paramref name="name"/> (cpu, cuda, cuda:N; spelling checked while parsing), refused with
    /// exit 2 when this machine or build has no such CUDA device. Asked before torch.device, which throws on a build or
    /// machine without CUDA instead of answering.
    /// </summary>
    public static torch.Device Checked(string name)
    {
        if (!name.StartsWith("cuda", StringComparison.OrdinalIgnoreCase)) return torch.device(name.ToLowerInvariant());
        if (!torch.cuda.is_available())
            throw new CliException(ExitCodes.Usage, $"--device {name}: no CUDA device here (or this build's libtorch is CPU-only: build with -p:TorchBackend=cuda); use --device cpu");
        int index = name.Length > 5 ? int.Parse(name[5..], CultureInfo.InvariantCulture) : 0;
        int count = torch.cuda.device_count();
        if (index >= count) throw new CliException(ExitCodes.Usage, $"--device {name}: this machine has {count} CUDA device(s) (cuda:0..cuda:{count - 1})");
        return torch.device(name.ToLowerInvariant());
    }

    /// <summary>
    /// What a command that runs a model does first: CKPT must be a directory and --data an existing file (exit 2 naming
    /// it otherwise), then threads, device and seed are set. Returns the device.
    /// </summary>
    public static torch.Device Start(string command, string ckpt, string? dataPath, int threads, string deviceName, long seed)
    {
        if (!Directory.Exists(ckpt))
            throw new CliException(ExitCodes.Usage, File.Exists(ckpt) ? $"{ckpt}: is a file; {command} takes a checkpoint directory" : $"{ckpt}: no such directory", ckpt);
        if (dataPath is not null && !File.Exists(dataPath)) throw new CliException(ExitCodes.Usage, $"--data {dataPath}: no such file", dataPath);
        SetThreads(threads);
        var device = Checked(deviceName);
        torch.manual_seed(seed);
        return device;
    }

    /// <summary>Sets libtorch's CPU intra-op threads; 0 keeps libtorch's default (one per core).</summary>
    public static void SetThreads(int threads)
    {
        if (threads > 0) torch.set_num_threads(threads);
    }
}
