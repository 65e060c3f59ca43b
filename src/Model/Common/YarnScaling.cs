using System.Text.Json.Nodes;

namespace Mtp.Model;

/// <summary>YaRN rope scaling parameters (a config's <c>rope_scaling</c> of type yarn), and the one YaRN frequency correction.</summary>
/// <param name="Factor">Context extension factor.</param>
/// <param name="OriginalMaxPositionEmbeddings">Pre-extension context length.</param>
/// <param name="BetaFast">High-frequency boundary (rotations).</param>
/// <param name="BetaSlow">Low-frequency boundary (rotations).</param>
/// <param name="Mscale">mscale (1 when absent).</param>
/// <param name="MscaleAllDim">mscale_all_dim (0 when absent, as in DeepSeek's modeling_deepseek.py and vLLM; see <see cref="Rope.CosSinFactor"/>).</param>
public sealed record YarnScaling(double Factor, int OriginalMaxPositionEmbeddings, double BetaFast, double BetaSlow, double Mscale, double MscaleAllDim)
{
    /// <summary>
    /// Reads <c>rope_scaling</c> of <paramref name="config"/>: a yarn entry (type or rope_type "yarn"), null for none or
    /// "default", and a problem for any other type. DeepSeek-V3 reads mscale / mscale_all_dim (<paramref name="withMscale"/>);
    /// V4 puts no mscale on cos/sin (1 and 0).
    /// </summary>
    public static YarnScaling? Read(JsonObject config, List<string> problems, int originalDefault, bool withMscale)
    {
        if (config["rope_scaling"] is not JsonObject rs) return null;
        string? type = rs["type"]?.GetValue<string>() ?? rs["rope_type"]?.GetValue<string>();
        if (type != "yarn")
        {
            if (type != "default") problems.Add($"rope_scaling type '{type}' is not supported (yarn or none)");
            return null;
        }
        double G(string k, double d) => rs[k] is JsonNode v ? ConfigReader.Num(v) : d;
        return new YarnScaling(G("factor", 1), (int)G("original_max_position_embeddings", originalDefault), G("beta_fast", 32), G("beta_slow", 1),
            withMscale ? G("mscale", 1) : 1, withMscale ? G("mscale_all_dim", 0) : 0);
    }

    /// <summary>
    /// YaRN-corrects <paramref name="inv"/> (inverse frequencies of a <paramref name="dim"/>-wide rope at base
    /// <paramref name="theta"/>) in place: the correction range and linear ramp of DeepSeek's inference/model.py
    /// <c>precompute_freqs_cis</c> (transformers' <c>_compute_yarn_parameters</c> computes the same). Returns it.
    /// </summary>
    public double[] Interpolate(double[] inv, int dim, double theta)
    {
        double CorrectionDim(double rotations) => dim * Math.Log(OriginalMaxPositionEmbeddings / (rotations * 2 * Math.PI)) / (2 * Math.Log(theta));
        double low = Math.Max(Math.Floor(CorrectionDim(BetaFast)), 0);
        double high = Math.Min(Math.Ceiling(CorrectionDim(BetaSlow)), dim - 1);
        if (low == high) high += 0.001;
        for (int i = 0; i < dim / 2; i++)
        {
            double extrapolation = 1 - Math.Clamp((i - low) / (high - low), 0, 1);
            inv[i] = inv[i] / Factor * (1 - extrapolation) + inv[i] * extrapolation;
        }
        return inv;
    }
}
