using System.Security.Cryptography;
using System.Text.Json;
using System.Text.Json.Nodes;
using Mtp.SafeTensors;

namespace Mtp.Adapters;

/// <summary>
/// <c>--part i/n</c> of a <see cref="ConversionPlan"/>: writes the i-th of n disjoint, contiguous sets of output shards
/// straight into OUT, then <c>OUT/.mtp-parts/plan-HASH.json</c> (<see cref="PartPlanDocument"/>) and
/// <c>OUT/.mtp-parts/part-i-of-n.json</c> (<see cref="PartManifest"/>), each atomically.
/// </summary>
internal static class PartExecution
{
    /// <summary>The parts' document format.</summary>
    public const string Format = "mtp-parts/1";

    static readonly JsonSerializerOptions Indented = new() { WriteIndented = true };

    /// <summary>Runs part <paramref name="part"/> of <paramref name="plan"/>.</summary>
    public static ConversionResult Run(ConversionPlan plan, (int Index, int Count) part, ConvertProgress? progress)
    {
        var (i, n) = part;
        var shards = plan.Shards;
        // A part without a shard would exit having done nothing, and the merge would wait for parts that never come.
        if (n > shards.Count && !plan.Options.AllowEmptyParts)
            throw new AdapterException(AdapterErrorKind.Usage,
                $"--part {i}/{n}: the plan has {shards.Count} shard(s), so at most {shards.Count} part(s); use --part I/{shards.Count} (or a smaller --max-shard-size)");
        var planned = shards.Select(s => new PartShard(s.FileName, plan.ShardFileSize(s),
            s.Tensors.Select(t => new PartShardTensor(t.Name, t.DType.Name(), t.Shape)).ToList())).ToList();
        JsonObject? indexMeta = plan.IndexMetadata();
        string hash = Hash(plan, planned, indexMeta);

        var mine = shards.Where((s, k) => Converter.PartOfShard(k, shards.Count, n) == i).ToList();
        string partsDir = Path.Combine(plan.FullOutDir, Converter.PartsDirName);
        var myNames = new HashSet<string>(mine.SelectMany(s => s.Tensors.Select(t => t.Name)), StringComparer.Ordinal);
        if (!plan.Options.SkipSpaceCheck)
            Converter.AsAdapterError(() => { Directory.CreateDirectory(plan.FullOutDir); OutputFolder.CheckSpace(plan.OutDir, plan.FullOutDir, mine.Sum(s => s.Bytes)); });
        long written;
        try
        {
            Directory.CreateDirectory(partsDir);
            progress?.Log?.Invoke($"part {i}/{n}: {mine.Count} of {shards.Count} shard(s), {mine.Sum(s => s.Bytes):N0} bytes (plan {hash[..12]})");
            written = new ShardPipeline(plan, mine, plan.FullOutDir, progress).Run();
            var report = Converter.BuildReport(plan, TimeSpan.Zero, plan.TotalBytes, withQuant: false);
            var doc = new PartPlanDocument
            {
                Format = Format, PlanHash = hash, Direction = plan.Direction.Name(), Family = plan.Family, TotalBytes = plan.TotalBytes,
                Tensors = plan.Outputs.Count, Shards = planned, WriteIndex = plan.WritesIndex, IndexMetadata = indexMeta,
                Config = (JsonObject)plan.Config.DeepClone(), Report = report, Requantize = plan.QuantPieces != null,
                AuxSources = plan.AuxiliarySources.Select(Path.GetFullPath).ToList(),
            };
            WriteStreamed(Path.Combine(partsDir, $"plan-{hash}.json"), doc);
            plan.Clock.Stop();
            var manifest = new PartManifest
            {
                Format = Format, PlanHash = hash, Part = i, Parts = n, Shards = mine.Select(s => s.FileName).ToList(),
                TiedChecks = (report.Extra?.GetValueOrDefault(TiedCopies.ManifestKey) as JsonNode)?.DeepClone() as JsonArray, BytesWritten = written,
                Seconds = Math.Round(plan.Clock.Elapsed.TotalSeconds, 3), Host = Environment.MachineName,
                Requantized = (plan.QuantPieces ?? new()).Where(q => myNames.Contains(q.WeightName) && !q.Unchanged)
                    .Select(q => new ReportRequantized(q.WeightName, q.ChangedBlocks)).ToList(),
            };
            OutputTransaction.WriteAllText(Path.Combine(partsDir, Converter.PartManifestName(i, n)), JsonSerializer.Serialize(manifest, Indented) + "\n");
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new AdapterException(AdapterErrorKind.Io, $"{plan.OutDir}: {e.Message}", e);
        }
        return new ConversionResult
        {
            OutputDirectory = plan.FullOutDir, Family = plan.Family, TensorsWritten = mine.Sum(s => s.Tensors.Count), Dropped = plan.Dropped,
            CarriedUnknown = plan.Carried, BytesWritten = written, Shards = mine.Select(s => s.FileName).ToList(),
            Requantized = plan.Requantized(myNames.Contains), Elapsed = plan.Clock.Elapsed,
        };
    }

    // Hashed as it is serialized (188,000 tensors make a 30 MB document: no string or byte copy of it is kept).
    static string Hash(ConversionPlan plan, IReadOnlyList<PartShard> shards, JsonObject? indexMeta)
    {
        ConvertOptions o = plan.Options;
        var input = new PartHashInput
        {
            Format = Format, Direction = plan.Direction.Name(), Family = plan.Family,
            Options = new PartHashOptions(o.DType?.Name(), o.PerExpertLayout, o.AllowUnknown, o.MaxShardBytes),
            ScaleFmt = Converter.ScaleFmtText(plan.Extra["source_quantization_config"] as JsonObject) ?? Converter.ScaleFmtText(Converter.QuantConfigOf(plan.Config)),
            SourceFiles = plan.Source.Files.Select(f => new PartSourceFile(Path.GetFileName(f.Path), f.FileLength)).ToList(),
            Shards = shards, IndexMetadata = indexMeta, WriteIndex = plan.WritesIndex, Config = plan.Config,
        };
        using var sha = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        using (var hw = new Utf8JsonWriter(new HashingStream(sha))) JsonSerializer.Serialize(hw, input);
        return Convert.ToHexString(sha.GetHashAndReset()).ToLowerInvariant();
    }

    /// <summary>Writes <paramref name="doc"/> compact, streamed to the file (no string of the whole plan), atomically.</summary>
    static void WriteStreamed<T>(string path, T doc) =>
        OutputTransaction.WriteFile(path, fs => { using var w = new Utf8JsonWriter(fs); JsonSerializer.Serialize(w, doc); });

    /// <summary>A write-only stream that feeds an incremental hash.</summary>
    sealed class HashingStream(IncrementalHash hash) : Stream
    {
        public override bool CanRead => false;
        public override bool CanSeek => false;
        public override bool CanWrite => true;
        public override long Length => throw new NotSupportedException();
        public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }
        public override void Flush() { }
        public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException();
        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
        public override void SetLength(long value) => throw new NotSupportedException();
        public override void Write(byte[] buffer, int offset, int count) => hash.AppendData(buffer, offset, count);
        public override void Write(ReadOnlySpan<byte> buffer) => hash.AppendData(buffer);
    }
}
