using System.CommandLine;

namespace Mtp.Cli.Commands;

/// <summary>The arguments and options of <c>mtp convert</c>.</summary>
sealed class ConvertFlags
{
    /// <summary>The IN argument.</summary>
    public readonly Argument<string?> Input = new Argument<string?>("in") { Description = "Input checkpoint directory (or single .safetensors file)", Arity = ArgumentArity.ZeroOrOne };
    /// <summary>The OUT argument.</summary>
    public readonly Argument<string?> Output = new Argument<string?>("out") { Description = "Output directory (written atomically; must be empty unless --force)", Arity = ArgumentArity.ZeroOrOne };
    /// <summary>The --to option.</summary>
    public readonly Option<string?> To = new Option<string?>("--to") { Description = "Target layout: native (training) or hf (required unless --merge-index)" }.OneOfIgnoringCase("native", "hf");
    /// <summary>The --part option.</summary>
    public readonly Option<string?> Part = new Option<string?>("--part") { Description = "i/n: convert only the i-th of n disjoint sets of output shards into OUT (shared by all parts); then run --merge-index OUT" };
    /// <summary>The --merge-index option.</summary>
    public readonly Option<string?> Merge = new Option<string?>("--merge-index") { Description = "OUT: once all --part i/n runs are done, check them and write the index, config.json and conversion.json" };
    /// <summary>The --family option.</summary>
    public readonly Option<string?> Family = new Option<string?>("--family") { Description = "Family (default: detect from config.json)" }.Family();
    /// <summary>The --dtype option.</summary>
    public readonly Option<string?> Dtype = new Option<string?>("--dtype") { Description = "bf16 (default) or f32 for quantized/BF16 tensors; with --to hf: write an unquantized HF checkpoint in this dtype (needed when neither --reference nor IN's conversion.json says the source format)" }.OneOfIgnoringCase("bf16|bfloat16", "f32|float32");
    /// <summary>The --reference option.</summary>
    public readonly Option<string?> Reference = new Option<string?>("--reference") { Description = "With --to hf: the original HF checkpoint (reuses its scales, shard names, weight_map and config.json)" };
    /// <summary>The --expert-layout option.</summary>
    public readonly Option<string> Layout = new Option<string>("--expert-layout") { Description = "Routed experts: stacked ([E,2I,H] gate_up_proj + [E,H,I] down_proj) or per-expert", DefaultValueFactory = _ => "stacked" }.OneOfIgnoringCase("stacked", "per-expert");
    /// <summary>The --threads option.</summary>
    public readonly Option<int> Threads = new Option<int>("--threads") { Description = "Worker threads (0: all cores)", DefaultValueFactory = _ => 0 }.AtLeast(0);
    /// <summary>The --max-shard-size option.</summary>
    public readonly Option<string> Shard = new Option<string>("--max-shard-size") { Description = "Maximum output shard size (e.g. 5GB, 500MB)", DefaultValueFactory = _ => "5GB" }.Size();
    /// <summary>The --max-memory option.</summary>
    public readonly Option<string> Memory = new Option<string>("--max-memory") { Description = "Memory budget for tensors computed at once (e.g. 2GB)", DefaultValueFactory = _ => "2GB" }.Size();
    /// <summary>The --keep-page-cache option.</summary>
    public readonly Option<bool> KeepCache = new Option<bool>("--keep-page-cache") { Description = "Leave input and output in the page cache (default: drop each range once consumed or written back, so memory stays bounded)" };
    /// <summary>The --force option.</summary>
    public readonly Option<bool> Force = new Option<bool>("--force") { Description = OutputFlags.ForceHelp };
    /// <summary>The --force-any option.</summary>
    public readonly Option<bool> ForceAny = new Option<bool>("--force-any") { Description = OutputFlags.ForceAnyHelp };
    /// <summary>The --no-space-check option.</summary>
    public readonly Option<bool> NoSpaceCheck = new Option<bool>("--no-space-check") { Description = OutputFlags.NoSpaceCheckHelp };
    /// <summary>The --allow-unknown option.</summary>
    public readonly Option<bool> AllowUnknown = new Option<bool>("--allow-unknown") { Description = "Carry tensors no rule claims through unchanged (reported) instead of failing" };
    /// <summary>The --json option.</summary>
    public readonly Option<bool> Json = new Option<bool>("--json") { Description = "Print one JSON summary on stdout, --merge-index too (or {\"error\": {...}} on failure)" };

    /// <summary>Every argument and option, in the order help lists them.</summary>
    public Symbol[] All => [Input, Output, To, Family, Dtype, Reference, Layout, Threads, Shard, Memory, Force, AllowUnknown, Json, Part, Merge, KeepCache, ForceAny, NoSpaceCheck];
}
