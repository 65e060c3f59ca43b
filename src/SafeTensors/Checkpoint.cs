using System.Text.Json.Nodes;

namespace Mtp.SafeTensors;

/// <summary>Where a tensor lives: its file and header entry.</summary>
/// <param name="File">The shard holding it.</param>
/// <param name="Info">Its header entry.</param>
public readonly record struct TensorLocation(SafeTensorsFile File, TensorInfo Info)
{
    /// <summary>Tensor name.</summary>
    public string Name => Info.Name;
}

/// <summary>
/// A checkpoint: one safetensors file, a directory of them, or a sharded directory with
/// <c>model.safetensors.index.json</c>. Every shard is validated, and the index is cross-checked
/// against the shards' headers. Tensors are looked up by name across shards.
/// </summary>
public sealed class Checkpoint : IDisposable
{
    readonly List<SafeTensorsFile> _files;
    readonly Dictionary<string, TensorLocation> _byName;
    readonly List<TensorLocation> _ordered;

    /// <summary>The directory (or the file's directory).</summary>
    public string Directory { get; }
    /// <summary>The opened shards, in name order.</summary>
    public IReadOnlyList<SafeTensorsFile> Files => _files;
    /// <summary>The index, when the checkpoint has one.</summary>
    public ShardIndex? Index { get; }
    /// <summary>Parsed config.json next to the weights, if any.</summary>
    public JsonObject? Config { get; }
    /// <summary>Every tensor, shard by shard in offset order.</summary>
    public IReadOnlyList<TensorLocation> Tensors => _ordered;
    /// <summary>Problems found while opening in collecting mode (empty in strict mode, which throws instead).</summary>
    public IReadOnlyList<SafeTensorsException> Problems { get; }

    Checkpoint(string dir, List<SafeTensorsFile> files, ShardIndex? index, JsonObject? config,
        Dictionary<string, TensorLocation> byName, List<TensorLocation> ordered, List<SafeTensorsException> problems)
    {
        Directory = dir;
        _files = files;
        Index = index;
        Config = config;
        _byName = byName;
        _ordered = ordered;
        Problems = problems;
    }

    /// <summary>Total bytes of tensor data across shards.</summary>
    public long TotalTensorBytes => _ordered.Sum(t => t.Info.ByteLength);

    /// <summary>Whether a tensor of that name exists.</summary>
    public bool Contains(string name) => _byName.ContainsKey(name);

    /// <summary>Finds a tensor by name across shards.</summary>
    public TensorLocation Get(string name) =>
        _byName.TryGetValue(name, out var loc) ? loc
        : throw new SafeTensorsException(SafeTensorsError.TensorNotFound, Directory, name, "no such tensor in the checkpoint");

    /// <summary>Finds a tensor, or returns false.</summary>
    public bool TryGet(string name, out TensorLocation location) => _byName.TryGetValue(name, out location);

    /// <summary>
    /// The same tensors under the names <paramref name="rename"/> gives (the name itself where it returns null), over the
    /// same shards: the result takes the shards over, so dispose it instead of this one. Two tensors given one name are
    /// refused (<see cref="SafeTensorsError.DuplicateName"/>, naming both).
    /// </summary>
    public Checkpoint WithNames(Func<string, string?> rename)
    {
        var byName = new Dictionary<string, TensorLocation>(StringComparer.Ordinal);
        var ordered = new List<TensorLocation>(_ordered.Count);
        var from = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var loc in _ordered)
        {
            string name = rename(loc.Name) ?? loc.Name;
            var moved = name == loc.Name ? loc : new TensorLocation(loc.File, loc.Info with { Name = name });
            if (!byName.TryAdd(name, moved))
                throw new SafeTensorsException(SafeTensorsError.DuplicateName, loc.File.Path, name, $"'{from[name]}' and '{loc.Name}' both read as '{name}'");
            from[name] = loc.Name;
            ordered.Add(moved);
        }
        return new Checkpoint(Directory, _files, Index, Config, byName, ordered, (List<SafeTensorsException>)Problems);
    }

    /// <summary>
    /// Opens <paramref name="path"/> strictly (throws on the first problem), or, with
    /// <paramref name="collectProblems"/>, records each problem, skips the bad shard or entry and goes on.
    /// </summary>
    public static Checkpoint Open(string path, bool collectProblems = false)
    {
        var problems = new List<SafeTensorsException>();
        void Report(SafeTensorsException e)
        {
            if (!collectProblems) throw e;
            problems.Add(e);
        }

        var (dir, shardPaths, index) = Locate(path);
        var files = new List<SafeTensorsFile>();
        JsonObject? config;
        var byName = new Dictionary<string, TensorLocation>(StringComparer.Ordinal);
        var ordered = new List<TensorLocation>();
        try
        {
            foreach (string shard in shardPaths)
            {
                if (OpenShard(dir, shard, Report) is not SafeTensorsFile f) continue;
                files.Add(f);
                foreach (TensorInfo t in f.Tensors)
                {
                    var loc = new TensorLocation(f, t);
                    if (byName.TryGetValue(t.Name, out var other))
                    {
                        Report(new SafeTensorsException(SafeTensorsError.TensorInTwoShards, f.Path, t.Name,
                            $"also stored in {System.IO.Path.GetFileName(other.File.Path)}"));
                        continue;
                    }
                    byName[t.Name] = loc;
                    ordered.Add(loc);
                }
            }
            if (index != null) CrossCheck(dir, index, files, byName, Report);
            config = ReadConfig(dir, Report);
        }
        catch
        {
            foreach (var f in files) f.Dispose();
            throw;
        }

        return new Checkpoint(dir, files, index, config, byName, ordered, problems);
    }

    // The directory, the shard files to open (the index's, else every .safetensors file) and the index if there is one.
    static (string Dir, List<string> Shards, ShardIndex? Index) Locate(string path)
    {
        if (File.Exists(path))
            return (System.IO.Path.GetDirectoryName(System.IO.Path.GetFullPath(path))!, new List<string> { path }, null);
        if (!System.IO.Directory.Exists(path))
            throw new SafeTensorsException(SafeTensorsError.NoCheckpoint, path, null, "no such file or directory");
        ShardIndex? index = null;
        List<string> shardPaths;
        string indexPath = System.IO.Path.Combine(path, ShardIndex.FileName);
        if (File.Exists(indexPath))
        {
            index = ShardIndex.Read(indexPath);
            shardPaths = index.WeightMap.Select(kv => kv.Value).Distinct(StringComparer.Ordinal)
                .OrderBy(s => s, StringComparer.Ordinal).Select(s => System.IO.Path.Combine(path, s)).ToList();
        }
        else
        {
            shardPaths = System.IO.Directory.GetFiles(path, "*.safetensors").OrderBy(s => s, StringComparer.Ordinal).ToList();
        }
        if (shardPaths.Count == 0)
            throw new SafeTensorsException(SafeTensorsError.NoCheckpoint, path, null, "no .safetensors files and no index here");
        return (path, shardPaths, index);
    }

    // One shard, or null (reported) when it is missing or does not validate.
    static SafeTensorsFile? OpenShard(string dir, string shard, Action<SafeTensorsException> report)
    {
        if (!File.Exists(shard))
        {
            report(new SafeTensorsException(SafeTensorsError.MissingShard, System.IO.Path.Combine(dir, ShardIndex.FileName), null,
                $"index names shard '{System.IO.Path.GetFileName(shard)}', which does not exist"));
            return null;
        }
        try { return SafeTensorsFile.Open(shard); }
        catch (SafeTensorsException e) { report(e); return null; }
    }

    /// <summary>
    /// DIR/config.json as <see cref="Open"/> reads it (at most <see cref="ShardIndex.MaxJsonFileBytes"/> bytes, UTF-8, a JSON
    /// object), or null when there is none.
    /// </summary>
    /// <exception cref="SafeTensorsException">The file is too large, not UTF-8, not JSON or not an object.</exception>
    public static JsonObject? ReadConfig(string dir) => ReadConfig(dir, e => throw e);

    // config.json next to the weights (capped, UTF-8, a JSON object), or null when absent or (reported) bad.
    static JsonObject? ReadConfig(string dir, Action<SafeTensorsException> report)
    {
        string configPath = System.IO.Path.Combine(dir, "config.json");
        if (!File.Exists(configPath)) return null;
        JsonObject? config = null;
        try
        {
            byte[] bytes = ShardIndex.ReadCapped(configPath, SafeTensorsError.BadConfig);
            if (!System.Text.Unicode.Utf8.IsValid(bytes))
                throw new SafeTensorsException(SafeTensorsError.BadConfig, configPath, null, "config.json is not valid UTF-8");
            config = JsonNode.Parse(bytes) as JsonObject;
            if (config is null)
                report(new SafeTensorsException(SafeTensorsError.BadConfig, configPath, null, "config.json is not a JSON object"));
        }
        catch (System.Text.Json.JsonException e)
        {
            report(new SafeTensorsException(SafeTensorsError.BadConfig, configPath, null, "config.json is not valid JSON: " + e.Message.Replace('\n', ' ')));
        }
        catch (SafeTensorsException e) { report(e); }
        return config;
    }

    static void CrossCheck(string dir, ShardIndex index, List<SafeTensorsFile> files,
        Dictionary<string, TensorLocation> byName, Action<SafeTensorsException> report)
    {
        string indexPath = System.IO.Path.Combine(dir, ShardIndex.FileName);
        var opened = files.ToDictionary(f => System.IO.Path.GetFileName(f.Path), StringComparer.Ordinal);
        var listed = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var (name, shard) in index.WeightMap)
        {
            listed[name] = shard;
            if (!opened.TryGetValue(shard, out var f)) continue; // missing or unreadable shard already reported
            if (!f.Contains(name))
                report(new SafeTensorsException(SafeTensorsError.TensorMissingFromShard, indexPath, name, $"index maps it to '{shard}', which does not hold it"));
        }
        foreach (var (name, loc) in byName)
        {
            string file = System.IO.Path.GetFileName(loc.File.Path);
            if (!listed.TryGetValue(name, out var shard))
                report(new SafeTensorsException(SafeTensorsError.TensorNotInIndex, loc.File.Path, name, "stored in this shard but not listed in the index"));
            else if (shard != file)
                report(new SafeTensorsException(SafeTensorsError.TensorNotInIndex, loc.File.Path, name, $"index maps it to '{shard}' instead"));
        }
    }

    /// <summary>
    /// Soft inconsistencies that do not stop a conversion (some published indexes carry a
    /// total_size that is not the sum of tensor bytes).
    /// </summary>
    public IReadOnlyList<string> Warnings
    {
        get
        {
            var w = new List<string>();
            if (Index?.TotalSize is long total && total != TotalTensorBytes && Problems.Count == 0)
                w.Add($"{System.IO.Path.Combine(Directory, ShardIndex.FileName)}: metadata.total_size is {total} but the shards hold {TotalTensorBytes} bytes of tensors");
            if (Index != null && Index.TotalSize is null)
                w.Add($"{System.IO.Path.Combine(Directory, ShardIndex.FileName)}: metadata.total_size is missing");
            return w;
        }
    }

    /// <inheritdoc />
    public void Dispose()
    {
        foreach (var f in _files) f.Dispose();
    }
}
