using System.Globalization;
using System.Text.Json.Nodes;
using Mtp.Adapters.Synthetic;

namespace Mtp.Cli.Commands;

public static partial class BenchConvertCommand
{
    // Every measurement of the interleaved repetitions, and the output sizes of the last one.
    sealed class BenchSamples
    {
        public List<ChildResult> ToNative { get; } = [];
        public List<ChildResult> ToHf { get; } = [];
        public List<FloorResult> FloorNative { get; } = [];
        public List<FloorResult> FloorHf { get; } = [];
        public List<FloorResult> FloorHfRef { get; } = [];
        public JsonArray Runs { get; } = [];
        public long NativeBytes { get; set; }
        public long BackBytes { get; set; }
    }

    static JsonObject Run(BenchConvertSetup s, Action<string> log)
    {
        var p = BenchPaths.Under(Path.GetFullPath(s.Work ?? Path.Combine(Path.GetTempPath(), "mtp-bench-" + Guid.NewGuid().ToString("N")[..8])));
        bool created = !Directory.Exists(p.Work);
        Directory.CreateDirectory(p.Work);
        bool drop = s.CacheMode switch
        {
            "drop" => CanDrop() ? true : throw new CliException(ExitCodes.Usage, "--cache drop needs write access to /proc/sys/vm/drop_caches (root)"),
            "warm" => false,
            _ => CanDrop(),
        };
        try
        {
            foreach (var d in new[] { p.Hf, p.Native, p.Back }) if (Directory.Exists(d)) Directory.Delete(d, true);
            double synthSeconds = Synthesize(s, p, log);
            var samples = new BenchSamples();
            for (int rep = 1; rep <= s.Repeat; rep++) MeasureOnce(s, p, drop, rep, samples, log);
            return Summary(s, p, drop, samples, synthSeconds);
        }
        finally
        {
            if (File.Exists(p.FloorFile)) File.Delete(p.FloorFile);
            if (!s.Keep)
            {
                foreach (var d in new[] { p.Hf, p.Native, p.Back }) if (Directory.Exists(d)) Directory.Delete(d, true);
                if (created && !Directory.EnumerateFileSystemEntries(p.Work).Any()) Directory.Delete(p.Work);
            }
        }
    }

    // Writes the HF checkpoint the conversions read; its time.
    static double Synthesize(BenchConvertSetup s, BenchPaths p, Action<string> log)
    {
        SynthModel model;
        try { model = SynthSizing.Resolve(s.Family, false, s.Target, new SynthOverrides()); }
        catch (ArgumentException e) { throw new CliException(ExitCodes.Usage, e.Message); }
        SynthPlan plan = model.Build();
        log($"bench: synthesizing {s.Family} {Units.Bytes(plan.TotalBytes)} (hidden {model.Hidden}, layers {model.Layers}, experts {model.Experts}) in {p.Hf}");
        return SynthWriter.WriteCheckpoint(plan, p.Hf, 0, s.MaxShard).Elapsed.TotalSeconds;
    }

    // One repetition: each conversion followed by its I/O floor, so a drift of the machine touches both alike.
    static void MeasureOnce(BenchConvertSetup s, BenchPaths p, bool drop, int rep, BenchSamples samples, Action<string> log)
    {
        var common = new List<string> { "--max-memory", s.MemoryText, "--max-shard-size", s.ShardText, "--threads", s.Threads.ToString(CultureInfo.InvariantCulture), "--force" };
        if (!s.DropBehind) common.Add("--keep-page-cache");
        string how = drop ? "page cache dropped" : "input warm in the page cache";
        string of = s.Repeat > 1 ? $" [{rep}/{s.Repeat}]" : "";
        // The previous repetition's outputs go first: --force would hold old and new side by side until the rename.
        foreach (var d in new[] { p.Native, p.Back }) if (Directory.Exists(d)) Directory.Delete(d, true);
        log($"bench{of}: convert --to native ({how})");
        PrepareCache(drop, p.Hf);
        var toNative = Child(new[] { "convert", p.Hf, p.Native, "--to", "native" }.Concat(common).ToArray());
        samples.NativeBytes = DirBytes(p.Native);

        log($"bench{of}: I/O floor for --to native (sequential read of the input, sequential fsynced write of the output size)");
        PrepareCache(drop, p.Hf);
        var floorNative = Floor(p.Hf, samples.NativeBytes, p.FloorFile, s.DropBehind);

        log($"bench{of}: convert --to hf --reference");
        PrepareCache(drop, p.Native);
        var toHf = Child(new[] { "convert", p.Native, p.Back, "--to", "hf", "--reference", p.Hf }.Concat(common).ToArray());
        samples.BackBytes = DirBytes(p.Back);

        log($"bench{of}: I/O floor for --to hf");
        PrepareCache(drop, p.Native);
        var floorHf = Floor(p.Native, samples.BackBytes, p.FloorFile, s.DropBehind);
        log($"bench{of}: I/O floor for --to hf --reference, counting the reference read too");
        PrepareCache(drop, p.Native);
        var floorHfRef = Floor(p.Native, samples.BackBytes, p.FloorFile, s.DropBehind, p.Hf);

        samples.ToNative.Add(toNative); samples.ToHf.Add(toHf);
        samples.FloorNative.Add(floorNative); samples.FloorHf.Add(floorHf); samples.FloorHfRef.Add(floorHfRef);
        samples.Runs.Add(new JsonObject
        {
            ["io_floor_s"] = Math.Round(floorNative.Seconds, 3), ["to_native_s"] = Math.Round(toNative.Seconds, 3),
            ["io_floor_to_hf_s"] = Math.Round(floorHf.Seconds, 3), ["io_floor_to_hf_with_reference_s"] = Math.Round(floorHfRef.Seconds, 3),
            ["to_hf_s"] = Math.Round(toHf.Seconds, 3), ["to_native_peak_rss_bytes"] = toNative.PeakRss, ["to_hf_peak_rss_bytes"] = toHf.PeakRss,
            ["to_native_cpu_s"] = Math.Round(toNative.CpuSeconds, 3), ["to_hf_cpu_s"] = Math.Round(toHf.CpuSeconds, 3),
        });
    }

    // The medians (peak RSS: the largest) of every repetition, as the --json document.
    static JsonObject Summary(BenchConvertSetup s, BenchPaths p, bool drop, BenchSamples samples, double synthSeconds)
    {
        long inBytes = DirBytes(p.Hf), natBytes = samples.NativeBytes, backBytes = samples.BackBytes;
        var floorNative1 = new FloorResult(Median(samples.FloorNative.Select(f => f.Seconds)), Median(samples.FloorNative.Select(f => f.ReadSeconds)),
            Median(samples.FloorNative.Select(f => f.WriteSeconds)));
        double fNative = floorNative1.Seconds, fHf = Median(samples.FloorHf.Select(f => f.Seconds)), fHfRef = Median(samples.FloorHfRef.Select(f => f.Seconds));
        double tNative = Median(samples.ToNative.Select(c => c.Seconds)), tHf = Median(samples.ToHf.Select(c => c.Seconds));
        long rssNative = samples.ToNative.Max(c => c.PeakRss), rssHf = samples.ToHf.Max(c => c.PeakRss);

        static double R(double x, int d = 3) => Math.Round(x, d);
        var load = File.Exists("/proc/loadavg") ? File.ReadAllText("/proc/loadavg").Trim() : null;
        return new JsonObject
        {
            ["family"] = s.Family,
            ["input_bytes"] = inBytes,
            ["output_bytes"] = natBytes,
            ["io_floor_s"] = R(fNative),
            ["to_native_s"] = R(tNative),
            ["to_hf_s"] = R(tHf),
            ["to_native_ratio"] = R(tNative / fNative),
            ["to_hf_ratio"] = R(tHf / fHf),
            ["peak_rss_bytes"] = Math.Max(rssNative, rssHf),
            ["to_native_peak_rss_bytes"] = rssNative,
            ["to_hf_peak_rss_bytes"] = rssHf,
            ["to_native_cpu_s"] = R(Median(samples.ToNative.Select(c => c.CpuSeconds))),
            ["to_hf_cpu_s"] = R(Median(samples.ToHf.Select(c => c.CpuSeconds))),
            ["to_hf_input_bytes"] = natBytes,
            ["to_hf_output_bytes"] = backBytes,
            ["io_floor_to_hf_s"] = R(fHf),
            ["io_floor_to_hf_with_reference_s"] = R(fHfRef),
            ["to_hf_ratio_with_reference_read"] = R(tHf / fHfRef),
            ["io_floor_read_gbps"] = R(inBytes / floorNative1.ReadSeconds / 1e9),
            ["io_floor_write_gbps"] = R(natBytes / floorNative1.WriteSeconds / 1e9),
            ["to_native_in_gbps"] = R(inBytes / tNative / 1e9),
            ["to_native_out_gbps"] = R(natBytes / tNative / 1e9),
            ["to_hf_in_gbps"] = R(natBytes / tHf / 1e9),
            ["to_hf_out_gbps"] = R(backBytes / tHf / 1e9),
            ["round_trip_same_size"] = backBytes == inBytes,
            ["cache"] = drop ? "dropped before each measurement" : "input warm in the page cache before each measurement",
            ["page_cache"] = s.DropBehind ? "drop-behind (conversions and floor)" : "kept (conversions and floor)",
            ["repeat"] = s.Repeat,
            ["runs"] = samples.Runs,
            ["synth_s"] = R(synthSeconds),
            ["max_memory"] = s.MemoryText,
            ["threads"] = s.Threads == 0 ? Environment.ProcessorCount : s.Threads,
            ["nproc"] = Environment.ProcessorCount,
            ["loadavg"] = load,
            ["work"] = p.Work,
        };
    }
}
