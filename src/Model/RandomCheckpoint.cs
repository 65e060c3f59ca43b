using System.Text.Json.Nodes;
using Mtp.Adapters;
using Mtp.SafeTensors;
using TorchSharp;
using static TorchSharp.torch;

namespace Mtp.Model;

/// <summary>Random-weight training-layout checkpoints (tests, smoke runs, benchmarks).</summary>
public static class RandomCheckpoint
{
    /// <summary>
    /// A tiny DeepSeek-V3 config: V=256, H=64, 3 layers (1 dense + 2 MoE), 4 routed experts in 2 groups,
    /// top-2 from 1 group, 1 shared expert, q_lora 32, kv_lora 32, qk_nope 16, qk_rope 8, v_head 16, 4 heads.
    /// </summary>
    public static JsonObject TinyConfig(int mtpDepths = 1) => new()
    {
        ["architectures"] = new JsonArray("DeepseekV3ForCausalLM"),
        ["model_type"] = FamilyRegistry.DeepSeekV3.ModelType,
        ["vocab_size"] = 256,
        ["hidden_size"] = 64,
        ["intermediate_size"] = 128,
        ["moe_intermediate_size"] = 32,
        ["num_hidden_layers"] = 3,
        ["num_attention_heads"] = 4,
        ["num_key_value_heads"] = 4,
        ["n_routed_experts"] = 4,
        ["n_shared_experts"] = 1,
        ["num_experts_per_tok"] = 2,
        ["n_group"] = 2,
        ["topk_group"] = 1,
        ["routed_scaling_factor"] = 2.5,
        ["norm_topk_prob"] = true,
        ["first_k_dense_replace"] = 1,
        ["moe_layer_freq"] = 1,
        ["q_lora_rank"] = 32,
        ["kv_lora_rank"] = 32,
        ["qk_nope_head_dim"] = 16,
        ["qk_rope_head_dim"] = 8,
        ["v_head_dim"] = 16,
        ["rms_norm_eps"] = 1e-6,
        ["rope_theta"] = 10000.0,
        ["max_position_embeddings"] = 4096,
        ["num_nextn_predict_layers"] = mtpDepths,
        ["scoring_func"] = "sigmoid",
        ["topk_method"] = "noaux_tc",
        ["tie_word_embeddings"] = false,
        ["hidden_act"] = "silu",
    };

    /// <summary>
    /// Writes config.json and random weights (normal(0, 0.02); norms 1; router bias 0) for <paramref name="config"/>
    /// into <paramref name="dir"/>; deterministic for <paramref name="seed"/>.
    /// </summary>
    public static void Write(string dir, JsonObject config, long seed, DType dtype = DType.F32, long maxShardBytes = CheckpointIO.DefaultShardBytes,
        bool ownDepthCopies = false)
    {
        var cfg = DeepSeekV3Config.FromJson(config);
        var own = Enumerable.Repeat(ownDepthCopies, cfg.NumNextnPredictLayers).ToArray();
        using var model = new DeepSeekV3Model(cfg, ScalarType.Float32, CPU, own, own);
        var gen = new Generator((ulong)seed);
        using (no_grad())
        {
            foreach (var (name, t) in model.StateDict())
            {
                if (name.EndsWith("e_score_correction_bias", StringComparison.Ordinal)) continue;
                if (name.EndsWith("norm.weight", StringComparison.Ordinal)) continue; // stays 1
                using var n = randn(t.shape, generator: gen);
                using var r = n.Times(0.02);
                t.copy_(r);
            }
        }
        CheckpointIO.SaveModel(model, dir, config, dtype, maxShardBytes);
    }
}
