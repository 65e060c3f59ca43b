using System.Text.Json.Nodes;

namespace Mtp.Adapters.Synthetic;

/// <summary>
/// Dimensions of a synthetic checkpoint. Each family has a <c>Tiny</c> default (a few MB, trains in
/// seconds) and a <c>Release</c> shape (the real model's widths); <see cref="WithHidden"/> rescales the
/// widths of the release shape to another hidden size (head counts and ranks proportionally, head
/// dimensions unchanged).
/// </summary>
/// <remarks>
/// Which tensors exist is not described here: <see cref="Build"/> takes every HF name from the family's rule table for
/// this model's config.json (see <see cref="SynthLayout"/>); a family only says how each name is stored (its storage
/// function), which expert layout it writes, and which carried tensors no text rule names.
/// </remarks>
/// <param name="Hidden">Hidden size H.</param>
/// <param name="Layers">Main decoder layers (num_hidden_layers).</param>
/// <param name="Experts">Routed experts E.</param>
/// <param name="Vocab">Vocabulary size.</param>
/// <param name="MtpDepth">MTP depth D.</param>
public abstract record SynthModel(int Hidden, int Layers, int Experts, int Vocab, int MtpDepth)
{
    /// <summary>Family id (one of <see cref="Families"/>).</summary>
    public abstract string Family { get; }

    /// <summary>Fewest main layers that still show every kind of layer of the family.</summary>
    public abstract int MinLayers { get; }

    /// <summary>The tensors and config.json of this model: the names its family's rule table expects for that config.</summary>
    /// <exception cref="ArgumentException">The dimensions are not valid (<see cref="Validate"/>).</exception>
    /// <exception cref="InvalidOperationException">The rule table names a tensor this family's storage does not know.</exception>
    public SynthPlan Build()
    {
        Validate();
        return SynthLayout.Plan(this, Config());
    }

    /// <summary>
    /// The tensors stored for HF name <paramref name="hfName"/> of layer <paramref name="layer"/>: the tensor, or a
    /// quantized weight and its scale.
    /// </summary>
    /// <exception cref="InvalidOperationException">The family's storage does not know the name.</exception>
    public IReadOnlyList<SynthTensor> TensorsOf(string hfName, LayerContext layer)
    {
        SynthStorage s = StorageOf(SynthLayout.LocalName(hfName), layer)
            ?? throw new InvalidOperationException($"synth {Family}: no storage for '{hfName}' (a rule names a tensor the family's synth does not size)");
        return s.Tensors(hfName, Scheme).ToList();
    }

    /// <summary>The release shape rescaled to hidden size <paramref name="hidden"/> (other fields kept).</summary>
    public abstract SynthModel WithHidden(int hidden);

    /// <summary>Bytes per vocabulary row (embedding and head, plus copies).</summary>
    public virtual long BytesPerVocabRow => 4L * Hidden;

    /// <summary>Throws <see cref="ArgumentException"/> for dimensions the layout cannot hold.</summary>
    public virtual void Validate()
    {
        if (Hidden < 32 || Hidden % 32 != 0) throw new ArgumentException($"hidden size {Hidden} must be a positive multiple of 32");
        if (Layers < 1) throw new ArgumentException($"layers {Layers} must be at least 1");
        if (Experts < 1) throw new ArgumentException($"experts {Experts} must be at least 1");
        if (Vocab < 1) throw new ArgumentException($"vocab {Vocab} must be at least 1");
        if (MtpDepth < 0) throw new ArgumentException($"MTP depth {MtpDepth} must not be negative");
    }

    /// <summary>The model for a family id ("deepseek-v3", "deepseek-v4", "qwen3.5"), tiny or release shape.</summary>
    public static SynthModel For(string family, bool release = false, bool fp8 = false) => family switch
    {
        Adapters.Families.DeepSeekV3 => release ? DeepSeekV3Synth.Release : DeepSeekV3Synth.Tiny,
        Adapters.Families.DeepSeekV32 => release ? DeepSeekV3Synth.ReleaseV32 : DeepSeekV3Synth.TinyV32,
        Adapters.Families.Glm45 => release ? Glm45Synth.Release : Glm45Synth.Tiny,
        Adapters.Families.DeepSeekV4 => release ? DeepSeekV4Synth.Release : DeepSeekV4Synth.Tiny,
        Adapters.Families.Qwen35 => (release ? Qwen35Synth.Release : Qwen35Synth.Tiny) with { Fp8 = fp8 },
        _ => throw new ArgumentException($"unknown family '{family}' ({string.Join(", ", Families)})"),
    };

    /// <summary>The families <see cref="For"/> knows.</summary>
    public static readonly string[] Families =
        { Adapters.Families.DeepSeekV3, Adapters.Families.DeepSeekV32, Adapters.Families.DeepSeekV4, Adapters.Families.Qwen35, Adapters.Families.Glm45 };

    /// <summary>The config.json of this model (the rule table is built from it).</summary>
    internal abstract JsonObject Config();

    /// <summary>
    /// How the tensor named <paramref name="local"/> in layer <paramref name="layer"/> is stored; null for a name the family
    /// does not know. <paramref name="local"/> is the HF name without its layer prefix (<c>model.layers.3.</c>,
    /// <c>mtp.0.</c>, ...) and with the expert index as <c>{e}</c>; names outside layers come whole.
    /// </summary>
    internal abstract SynthStorage? StorageOf(string local, LayerContext layer);

    /// <summary>Whether the routed experts of <paramref name="layer"/> are written fused (<c>gate_up_proj</c> / <c>down_proj</c>) rather than per expert.</summary>
    internal virtual bool FusedExperts(LayerContext layer) => false;

    /// <summary>Tensors written beside the text model that only a carry-through rule matches (Qwen3.5's vision tower).</summary>
    internal virtual IEnumerable<(string Name, SynthStorage Storage)> Carried() => Array.Empty<(string, SynthStorage)>();

    /// <summary>The final config.json once the tensors are known (<paramref name="text"/>: those the rules named).</summary>
    internal virtual JsonObject Finish(JsonObject config, IReadOnlyList<SynthTensor> text) => config;

    /// <summary>The quantization scheme of <see cref="Family"/>.</summary>
    internal QuantScheme Scheme => FamilyRegistry.Module(Family)!.Quant;

    /// <summary>
    /// The FP8 releases' <c>quantization_config</c>: dynamic E4M3 activations, the scheme's square weight blocks, and
    /// <paramref name="scaleFmt"/> when the release states one (DeepSeek-V4's <c>ue8m0</c>).
    /// </summary>
    protected JsonObject Fp8QuantizationConfig(string? scaleFmt = null)
    {
        var q = new JsonObject { ["activation_scheme"] = "dynamic", ["fmt"] = "e4m3", ["quant_method"] = "fp8" };
        if (scaleFmt != null) q["scale_fmt"] = scaleFmt;
        q["weight_block_size"] = Ints(new[] { Scheme.BlockSize, Scheme.BlockSize });
        return q;
    }

    /// <summary><paramref name="v"/> * <paramref name="f"/> rounded to a multiple of <paramref name="m"/>, at least <paramref name="m"/>.</summary>
    protected static int Scale(int v, double f, int m) => Math.Max(m, (int)Math.Round(v * f / m) * m);

    /// <summary>Helper for JSON arrays of ints.</summary>
    protected static JsonArray Ints(IEnumerable<int> v) => new(v.Select(x => (JsonNode?)x).ToArray());
}
