namespace Mtp.Adapters.Synthetic;

/// <summary>Explicit dimensions that override the family's defaults (null: chosen automatically).</summary>
/// <param name="Layers">Main decoder layers.</param>
/// <param name="Hidden">Hidden size (a multiple of 32).</param>
/// <param name="Experts">Routed experts per MoE layer.</param>
/// <param name="Vocab">Vocabulary size.</param>
/// <param name="MtpDepth">MTP depth (default 1).</param>
public sealed record SynthOverrides(int? Layers = null, int? Hidden = null, int? Experts = null, int? Vocab = null, int? MtpDepth = null);

/// <summary>Chooses the dimensions of a synthetic checkpoint: the tiny default, explicit ones, or a fit to a byte size.</summary>
public static class SynthSizing
{
    /// <summary>Relative tolerance <see cref="Fit"/> aims for.</summary>
    public const double Tolerance = 0.10;

    /// <summary>
    /// Without a target: the family's tiny model with <paramref name="o"/> applied (an explicit hidden
    /// size rescales the release widths to it; vocab stays 512 unless given). With a target: <see cref="Fit"/>.
    /// </summary>
    public static SynthModel Resolve(string family, bool fp8, long? targetBytes, SynthOverrides o)
    {
        if (targetBytes is long t) return Fit(family, fp8, t, o);
        SynthModel m = SynthModel.For(family, release: false, fp8);
        if (o.Hidden is int h) m = m.WithHidden(h);
        m = m with
        {
            Layers = o.Layers ?? m.Layers, Experts = o.Experts ?? m.Experts,
            Vocab = o.Vocab ?? m.Vocab, MtpDepth = o.MtpDepth ?? m.MtpDepth,
        };
        m.Validate();
        return m;
    }

    /// <summary>
    /// The release shape scaled to about <paramref name="targetBytes"/> of tensor data. Tries hidden sizes
    /// from the release's downwards by halves (down to 64), and for each the fewest layers (at least
    /// <see cref="SynthModel.MinLayers"/>) whose size, with the release's expert count or fewer experts
    /// (at least 4), lands within <see cref="Tolerance"/>; the first fit wins (widest model). The vocabulary
    /// is the release's, capped so that embedding and head take about 10% of the target (at least 256).
    /// Explicit overrides are held fixed. When nothing fits, the closest candidate is returned.
    /// </summary>
    public static SynthModel Fit(string family, bool fp8, long targetBytes, SynthOverrides o)
    {
        if (targetBytes <= 0) throw new ArgumentException("target size must be positive");
        SynthModel release = SynthModel.For(family, release: true, fp8);
        double T = targetBytes;
        var hiddens = new List<int>();
        if (o.Hidden is int fixedH) hiddens.Add(fixedH);
        else for (int h = release.Hidden; h >= 64; h /= 2) hiddens.Add(h);
        int eMax = o.Experts ?? release.Experts, eMin = o.Experts ?? Math.Min(4, eMax);

        SynthModel? best = null;
        double bestErr = double.MaxValue;
        foreach (int h in hiddens)
        {
            SynthModel m0 = release.WithHidden(h) with { MtpDepth = o.MtpDepth ?? 1 };
            int vocab = o.Vocab ?? (int)Math.Clamp(Math.Floor(0.1 * T / m0.BytesPerVocabRow / 256) * 256, 256, release.Vocab);
            m0 = m0 with { Vocab = vocab };
            m0.Validate();
            // a plan walks the family's rule table (tens of thousands of names at release widths): each size is built once
            var sizes = new Dictionary<(int, int), long>();
            long Bytes(int l, int e) =>
                sizes.TryGetValue((l, e), out long b) ? b : sizes[(l, e)] = (m0 with { Layers = l, Experts = e }).Build().TotalBytes;
            bool Consider(int l, int e, long bytes)
            {
                double err = Math.Abs(bytes - T) / T;
                if (err < bestErr) { bestErr = err; best = m0 with { Layers = l, Experts = e }; }
                return err <= Tolerance;
            }

            int lMin = o.Layers ?? m0.MinLayers, lMax = o.Layers ?? 100_000;
            int lStart = lMin;
            if (o.Layers is null)
            {
                long b0 = Bytes(lMin, eMax), b2 = Bytes(lMin + 2, eMax);
                double slope = Math.Max(1, (b2 - b0) / 2.0);
                if (b0 < (1 - Tolerance) * T) lStart = Math.Max(lMin, lMin + (int)(((1 - Tolerance) * T - b0) / slope) - 1);
            }
            for (int l = lStart; l <= lMax; l++)
            {
                long hi = Bytes(l, eMax);
                if (Consider(l, eMax, hi)) return best!;
                if (hi < T) continue; // more layers
                long lo = Bytes(l, eMin);
                if (Consider(l, eMin, lo)) return best!;
                if (lo > T) break; // too big even with the fewest experts: a narrower model
                int a = eMin, z = eMax; // B(a) <= T < B(z)
                while (z - a > 1)
                {
                    int mid = (a + z) / 2;
                    if (Bytes(l, mid) <= T) a = mid; else z = mid;
                }
                if (Consider(l, a, Bytes(l, a)) | Consider(l, z, Bytes(l, z))) return best!;
                break;
            }
        }
        return best ?? throw new ArgumentException("no model fits the requested size");
    }
}
