using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using System.Text.Json.Nodes;
using Mtp.Adapters.Synthetic;
using Mtp.SafeTensors;
using Spectre.Console;
using Mtp.SafeTensors.IO;

namespace Mtp.Cli.Commands;

/// <summary>
/// <c>mtp bench convert [--family F] [--size 8GB] [--json] [--work DIR] [--keep]</c>: synthesizes a checkpoint, then measures
/// the I/O floor (plain sequential read of the input + write of the output, fsynced), <c>convert --to native</c> and
/// <c>convert --to hf --reference</c>, each conversion as a child process whose peak RSS is read from the OS (VmHWM).
/// </summary>
public static partial class BenchConvertCommand
{
    /// <summary>Builds the command.</summary>
    public static Command Create()
    {
        var family = new Option<string>("--family") { Description = "Synthetic family (deepseek-v4: H=4096, FP8 attention/shared experts with E8M0 scales, FP4 routed experts)", DefaultValueFactory = _ => "deepseek-v4" }.SynthFamily("bench convert");
        var size = new Option<string>("--size") { Description = "Checkpoint size, e.g. 64MB, 2GB, 8GB", DefaultValueFactory = _ => "8GB" }.Size();
        var json = new Option<bool>("--json") { Description = "Print one JSON object" };
        var work = new Option<string?>("--work") { Description = "Work directory for the checkpoints (default: a new directory under the system temp dir); put it on the disk you want to measure" };
        var keep = new Option<bool>("--keep") { Description = "Keep the synthesized and converted checkpoints" };
        var threads = new Option<int>("--threads") { Description = "Conversion threads (0: all cores)", DefaultValueFactory = _ => 0 }.AtLeast(0);
        var memory = new Option<string>("--max-memory") { Description = "--max-memory passed to each conversion", DefaultValueFactory = _ => "2GB" }.Size();
        var shard = new Option<string>("--max-shard-size") { Description = "Shard size of the synthesized and converted checkpoints", DefaultValueFactory = _ => "5GB" }.Size();
        var cache = new Option<string>("--cache") { Description = "auto: drop the page cache before every measurement when permitted (root), else warm; drop; warm: read the input into the page cache before every measurement", DefaultValueFactory = _ => "auto" }.OneOf("auto", "drop", "warm");
        var pageCache = new Option<string>("--page-cache") { Description = "drop: conversions and floor drop what they have read or written back from the page cache (convert's default); keep: neither does (convert --keep-page-cache)", DefaultValueFactory = _ => "drop" }.OneOf("drop", "keep");
        var repeat = new Option<int>("--repeat") { Description = "Measure every conversion and floor this many times, interleaved; report medians", DefaultValueFactory = _ => 1 }.AtLeast(1);
        var cmd = new Command("convert", "Time convert --to native and --to hf --reference on a synthetic checkpoint against the machine's I/O floor, with peak RSS");
        foreach (var o in new Option[] { family, size, json, work, keep, threads, memory, shard, cache, pageCache, repeat }) cmd.Options.Add(o);
        cmd.SetAction(r =>
        {
            bool asJson = r.GetValue(json);
            return CommandRunner.Run(() =>
            {
                long target = Units.ParseSize(r.GetValue(size)!);
                if (target <= 0) throw new CliException(ExitCodes.Usage, "--size must be positive");
                if (r.GetValue(threads) < 0) throw new CliException(ExitCodes.Usage, "--threads must be >= 0");
                if (r.GetValue(repeat) < 1) throw new CliException(ExitCodes.Usage, "--repeat must be >= 1");
                _ = Units.ParseSize(r.GetValue(memory)!); // fails on a bad --max-memory now, not after the synthesis
                long maxShard = Units.ParseSize(r.GetValue(shard)!);
                var res = Run(new BenchConvertSetup
                {
                    Family = Mtp.Adapters.Families.Normalize(r.GetValue(family)!)!, Target = target, Work = r.GetValue(work), Keep = r.GetValue(keep),
                    Threads = r.GetValue(threads), MemoryText = r.GetValue(memory)!, ShardText = r.GetValue(shard)!, MaxShard = maxShard,
                    CacheMode = r.GetValue(cache)!, DropBehind = r.GetValue(pageCache) == "drop", Repeat = r.GetValue(repeat),
                }, CliOutput.Current.Info);
                if (asJson) { CliOutput.Document(res); return ExitCodes.Ok; }
                Print(res);
                return ExitCodes.Ok;
            }, r.GetValue(GlobalOptions.Verbose), asJson);
        });
        return cmd;
    }

    static void Print(JsonObject r)
    {
        var t = new Table().Border(TableBorder.Rounded).AddColumns("measurement (median)", "seconds", "CPU s", "GB/s in", "GB/s out", "peak RSS", "x I/O floor");
        double inB = r["input_bytes"]!.GetValue<long>(), natB = r["output_bytes"]!.GetValue<long>(), backB = r["to_hf_output_bytes"]!.GetValue<long>();
        string G(double b, double s) => (b / s / 1e9).ToString("F2", CultureInfo.InvariantCulture);
        string F(double x) => x.ToString("F2", CultureInfo.InvariantCulture);
        double f1 = r["io_floor_s"]!.GetValue<double>(), f2 = r["io_floor_to_hf_s"]!.GetValue<double>(), n = r["to_native_s"]!.GetValue<double>(), h = r["to_hf_s"]!.GetValue<double>();
        t.AddRow("I/O floor (read HF, write native size)", F(f1), "-", G(inB, f1), G(natB, f1), "-", "1.00");
        t.AddRow("convert --to native", F(n), F(r["to_native_cpu_s"]!.GetValue<double>()), G(inB, n), G(natB, n), Units.Bytes(r["to_native_peak_rss_bytes"]!.GetValue<long>()), r["to_native_ratio"]!.ToString());
        t.AddRow("I/O floor (read native, write HF size)", F(f2), "-", G(natB, f2), G(backB, f2), "-", "1.00");
        t.AddRow("convert --to hf --reference", F(h), F(r["to_hf_cpu_s"]!.GetValue<double>()), G(natB, h), G(backB, h), Units.Bytes(r["to_hf_peak_rss_bytes"]!.GetValue<long>()), r["to_hf_ratio"]!.ToString());
        double f3 = r["io_floor_to_hf_with_reference_s"]!.GetValue<double>();
        t.AddRow("I/O floor (read native + all of the reference, write HF size)", F(f3), "-", "-", G(backB, f3), "-", r["to_hf_ratio_with_reference_read"]!.ToString() + " (to hf)");
        CliOutput.Current.Render(t);
        CliOutput.Current.Result($"{r["family"]}: {Units.Bytes(inB)} HF <-> {Units.Bytes(natB)} native; {r["cache"]}; page cache: {r["page_cache"]}; " +
            $"{r["threads"]} threads; median of {r["repeat"]} run(s); load {r["loadavg"]}");
    }

    static long DirBytes(string dir) => Directory.GetFiles(dir, "*.safetensors").Sum(f => new FileInfo(f).Length);

    static bool CanDrop()
    {
        if (!OperatingSystem.IsLinux()) return false;
        try { File.WriteAllText("/proc/sys/vm/drop_caches", "1"); return true; }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { return false; }
    }

    static void PrepareCache(bool drop, string dir)
    {
        if (drop)
        {
            using (var p = Process.Start(new ProcessStartInfo("sync") { UseShellExecute = false })) p?.WaitForExit();
            File.WriteAllText("/proc/sys/vm/drop_caches", "1");
            return;
        }
        var buf = new byte[16 << 20];
        foreach (var f in Directory.GetFiles(dir, "*.safetensors"))
        {
            using var fs = new FileStream(f, FileMode.Open, FileAccess.Read, FileShare.Read, 1, FileOptions.SequentialScan);
            while (fs.Read(buf) > 0) { }
        }
    }

    readonly record struct FloorResult(double Seconds, double ReadSeconds, double WriteSeconds);

    static double Median(IEnumerable<double> xs)
    {
        var a = xs.Order().ToArray();
        return a.Length % 2 == 1 ? a[a.Length / 2] : (a[a.Length / 2 - 1] + a[a.Length / 2]) / 2;
    }

    /// <summary>
    /// Plain sequential I/O: read every shard of <paramref name="dir"/> (and <paramref name="alsoRead"/>), then write
    /// <paramref name="outBytes"/> and fsync. With <paramref name="dropBehind"/> it treats the page cache as the conversions
    /// do: each read chunk is dropped once read, and the write runs under the same write-behind.
    /// </summary>
    static FloorResult Floor(string dir, long outBytes, string file, bool dropBehind, string? alsoRead = null)
    {
        var buf = new byte[16 << 20];
        new Random(1).NextBytes(buf);
        var sw = Stopwatch.StartNew();
        foreach (var f in new[] { dir, alsoRead }.Where(d => d != null).SelectMany(d => Directory.GetFiles(d!, "*.safetensors").Order(StringComparer.Ordinal)))
        {
            using var h = File.OpenHandle(f, FileMode.Open, FileAccess.Read, FileShare.Read, FileOptions.SequentialScan);
            long off = 0;
            for (int n; (n = RandomAccess.Read(h, buf, off)) > 0; off += n)
                if (dropBehind) PageCache.Drop(h, off, n);
        }
        double read = sw.Elapsed.TotalSeconds;
        // The write goes through the conversions' own file writer (direct I/O under drop-behind). Every 4 KiB block written
        // is distinct (random bytes, stamped with a counter): a conversion never writes a block twice, and a storage
        // layer that deduplicates or compresses must not make the floor look faster than real data could be.
        new Random(1).NextBytes(buf);
        using (var o = SequentialFile.Create(file, dropBehind ? WriteMode.Direct : WriteMode.Cached))
        {
            long block = 0;
            for (long left = outBytes; left > 0; left -= buf.Length)
            {
                for (int at = 0; at + 8 <= buf.Length; at += 4096) BitConverter.TryWriteBytes(buf.AsSpan(at, 8), block++);
                o.Write(buf.AsSpan(0, (int)Math.Min(buf.Length, left)));
            }
            o.Complete();
        }
        double total = sw.Elapsed.TotalSeconds;
        File.Delete(file);
        return new FloorResult(total, read, total - read);
    }

    [System.Runtime.InteropServices.DllImport("libc", EntryPoint = "getrusage")]
    static extern unsafe int GetRusage(int who, long* usage);

    /// <summary>User + system CPU seconds of all waited-for children so far (getrusage RUSAGE_CHILDREN); 0 off Linux.</summary>
    static unsafe double ChildrenCpuSeconds()
    {
        if (!OperatingSystem.IsLinux()) return 0;
        long* u = stackalloc long[18]; // struct rusage: ru_utime, ru_stime (timeval = 2 longs each), then 14 longs
        try { if (GetRusage(-1, u) != 0) return 0; }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException) { return 0; }
        return u[0] + u[1] / 1e6 + u[2] + u[3] / 1e6;
    }

    readonly record struct ChildResult(double Seconds, long PeakRss, double CpuSeconds);

    /// <summary>Runs <c>dotnet mtp.dll ARGS</c> (a single-file build: the executable itself), timing it and polling
    /// its VmHWM (peak resident set) from /proc.</summary>
    static ChildResult Child(string[] args)
    {
        // Assembly.Location is empty in a single-file build (IL3000); there mtp.dll does not exist and the
        // running executable is the whole program.
        string dll = Path.Combine(AppContext.BaseDirectory, "mtp.dll");
        bool singleFile = !File.Exists(dll) && Environment.ProcessPath is { } self && File.Exists(self);
        string host = singleFile ? Environment.ProcessPath!
            : Environment.GetEnvironmentVariable("DOTNET_HOST_PATH") is { Length: > 0 } h && File.Exists(h) ? h
            : Environment.ProcessPath is { } pp && Path.GetFileNameWithoutExtension(pp) == "dotnet" ? pp : "dotnet";
        var psi = new ProcessStartInfo(host) { UseShellExecute = false, RedirectStandardOutput = true, RedirectStandardError = true };
        if (!singleFile) psi.ArgumentList.Add(dll);
        foreach (var a in args) psi.ArgumentList.Add(a);
        var err = new System.Text.StringBuilder();
        double cpuBefore = ChildrenCpuSeconds();
        var sw = Stopwatch.StartNew();
        using var p = Process.Start(psi) ?? throw new CliException(ExitCodes.Internal, $"cannot start {host} {dll}");
        p.ErrorDataReceived += (_, e) => { if (e.Data != null) lock (err) err.AppendLine(e.Data); };
        p.OutputDataReceived += (_, _) => { };
        p.BeginErrorReadLine();
        p.BeginOutputReadLine();
        long peak = 0;
        string status = $"/proc/{p.Id}/status";
        while (!p.WaitForExit(10))
        {
            try
            {
                foreach (var line in File.ReadLines(status))
                    if (line.StartsWith("VmHWM:", StringComparison.Ordinal))
                    {
                        peak = Math.Max(peak, long.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1], CultureInfo.InvariantCulture) * 1024);
                        break;
                    }
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException or FormatException) { }
        }
        p.WaitForExit();
        double secs = sw.Elapsed.TotalSeconds;
        double cpu = ChildrenCpuSeconds() - cpuBefore;
        if (p.ExitCode != 0)
        {
            string last;
            lock (err) last = err.ToString().Trim().Split('\n').LastOrDefault(l => l.Contains("mtp: error") || l.Contains("error")) ?? err.ToString().Trim().Split('\n').Last();
            throw new CliException(ExitCodes.Internal, $"mtp {string.Join(' ', args.Take(5))} failed (exit {p.ExitCode}): {last.Trim()}");
        }
        return new ChildResult(secs, peak, cpu);
    }
}
