using System.CommandLine;
using Mtp.SafeTensors;

namespace Mtp.Cli.Commands;

/// <summary>The argument and options of <c>mtp synth</c>, shared by its dense and replica paths.</summary>
sealed class SynthFlags
{
    /// <summary>The output directory.</summary>
    public readonly Argument<string> Output = new Argument<string>("out") { Description = "Output checkpoint directory (created; must be empty unless --force)" };
    /// <summary>The --family option.</summary>
    public readonly Option<string> Family = new Option<string>("--family") { Description = "Family to write (qwen3-next has no synthetic layout yet); required unless --like" }.SynthFamily("synth");
    /// <summary>The --like option.</summary>
    public readonly Option<string?> Like = new Option<string?>("--like") { Description = "A released config.json: write a header-true replica of that checkpoint (its tensor names, shapes, dtypes; the config copied verbatim); needs --sparse", HelpName = "CONFIG.json" };
    /// <summary>The --index option.</summary>
    public readonly Option<string?> Index = new Option<string?>("--index") { Description = "With --like: the release's model.safetensors.index.json, whose weight map fixes the shard files and which tensor each holds", HelpName = "WEIGHT_MAP.json" };
    /// <summary>The --sparse option.</summary>
    public readonly Option<bool> Sparse = new Option<bool>("--sparse") { Description = "With --like: shards as sparse files, the data as holes except the scales, written for real (a 689 GB replica takes a few MB of disk)" };
    /// <summary>The --header-only option.</summary>
    public readonly Option<bool> HeaderOnly = new Option<bool>("--header-only") { Description = "With --sparse: write no scales either (every data byte a hole; enough for planning and header checks)" };
    /// <summary>The --no-fp4-scales option.</summary>
    public readonly Option<bool> NoFp4Scales = new Option<bool>("--no-fp4-scales") { Description = "With --sparse: leave FP4 group scales as holes (E8M0 0 = 2^-127, finite); for DeepSeek-V4-Pro, whose FP4 scales alone are 49 GB" };
    /// <summary>The --size option.</summary>
    public readonly Option<string?> Size = new Option<string?>("--size") { Description = "Target tensor bytes, e.g. 500MB, 4GB, 1.5GiB: scales the release shape (layers, then experts, then hidden) to land within 10%" }.Size();
    /// <summary>The --layers option.</summary>
    public readonly Option<int?> Layers = new Option<int?>("--layers") { Description = "Main decoder layers (default: 3 for DeepSeek, 4 for Qwen3.5; chosen by --size)" }.AtLeast(1);
    /// <summary>The --hidden option.</summary>
    public readonly Option<int?> Hidden = new Option<int?>("--hidden") { Description = "Hidden size, a multiple of 32 (default 64; chosen by --size); other widths follow the release's proportions" }.AtLeast(1);
    /// <summary>The --experts option.</summary>
    public readonly Option<int?> Experts = new Option<int?>("--experts") { Description = "Routed experts per MoE layer (default 4; chosen by --size)" }.AtLeast(1);
    /// <summary>The --vocab option.</summary>
    public readonly Option<int?> Vocab = new Option<int?>("--vocab") { Description = "Vocabulary size (default 512; with --size: the release's, capped at ~10% of the target)" }.AtLeast(1);
    /// <summary>The --mtp-depth option.</summary>
    public readonly Option<int> Depth = new Option<int>("--mtp-depth") { Description = "MTP depth", DefaultValueFactory = _ => 1 }.AtLeast(0);
    /// <summary>The --quant option.</summary>
    public readonly Option<string?> Quant = new Option<string?>("--quant") { Description = "Qwen3.5 only: bf16 (the BF16 release, default) or fp8 (the FP8 release)" }.OneOf("bf16", "fp8");
    /// <summary>The --seed option.</summary>
    public readonly Option<ulong> Seed = new Option<ulong>("--seed") { Description = "Random seed: the same seed gives byte-identical files", DefaultValueFactory = _ => 0 };
    /// <summary>The --max-shard-size option.</summary>
    public readonly Option<string> MaxShard = new Option<string>("--max-shard-size") { Description = "Largest shard file", DefaultValueFactory = _ => "5GB" }.Size();
    /// <summary>The --force option.</summary>
    public readonly Option<bool> Force = new Option<bool>("--force") { Description = OutputFlags.ForceHelp };
    /// <summary>The --force-any option.</summary>
    public readonly Option<bool> ForceAny = new Option<bool>("--force-any") { Description = OutputFlags.ForceAnyHelp };
    /// <summary>The --no-space-check option.</summary>
    public readonly Option<bool> NoSpaceCheck = new Option<bool>("--no-space-check") { Description = OutputFlags.NoSpaceCheckHelp };
    /// <summary>The --json option.</summary>
    public readonly Option<bool> Json = new Option<bool>("--json") { Description = "Print one JSON summary on stdout (or {\"error\": {...}} on failure)" };

    /// <summary>Every option, in the order help lists them.</summary>
    public Option[] All => [Family, Like, Index, Sparse, HeaderOnly, NoFp4Scales, Size, Layers, Hidden, Experts, Vocab, Depth, Quant, Seed, MaxShard, Force, ForceAny, NoSpaceCheck, Json];

    /// <summary>The output rules --force, --force-any and --no-space-check ask for, cancelled by an interrupt.</summary>
    public OutputRules Rules(ParseResult r) =>
        new() { Force = r.GetValue(Force), ForceAny = r.GetValue(ForceAny), SkipSpaceCheck = r.GetValue(NoSpaceCheck), Cancel = Interrupt.Token };
}
