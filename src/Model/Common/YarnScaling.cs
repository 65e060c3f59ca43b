using System.Globalization;
using System.Text.Json.Nodes;

namespace Mtp.Model;

/// <summary>YaRN rope scaling parameters (as in the DeepSeek-V3 config's <c>rope_scaling</c>).</summary>
/// <param name="Factor">Context extension factor.</param>
/// <param name="OriginalMaxPositionEmbeddings">Pre-extension context length.</param>
/// <param name="BetaFast">High-frequency boundary (rotations).</param>
/// <param name="BetaSlow">Low-frequency boundary (rotations).</param>
/// <param name="Mscale">mscale (1 when absent).</param>
/// <param name="MscaleAllDim">mscale_all_dim (0 when absent, as in DeepSeek's modeling_deepseek.py and vLLM; see <see cref="Rope.CosSinFactor"/>).</param>
public sealed record YarnScaling(double Factor, int OriginalMaxPositionEmbeddings, double BetaFast, double BetaSlow, double Mscale, double MscaleAllDim);
