using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using System.Text.Json.Nodes;
using Mtp.Model;
using Spectre.Console;
using TorchSharp;

namespace Mtp.Cli.Commands;

/// <summary>
/// <c>mtp eval</c>: main loss and perplexity, each MTP depth's loss and top-1 acceptance (unconditioned and chained) and
/// the expected accepted length per decoding step, over batches of a token file or the synthetic stream.
/// </summary>
public static class EvalCommand
{
    /// <summary>Builds the command.</summary>
    public static Command Create()
    {
        var ckpt = new Argument<string>("checkpoint") { Description = "Checkpoint directory of a family with a model: a Hugging Face release (converted in memory) or the training layout." };
        var data = new Option<string?>("--data") { Description = "Token ids: .bin/.u16 (uint16), .i32 (int32) or .jsonl (one list of ids per document), read from the start. Default: the learnable synthetic stream of --seed." };
        var batches = new Option<int>("--batches") { Description = "Batches to evaluate.", DefaultValueFactory = _ => 8 }.AtLeast(1);
        var batch = new Option<int>("--batch") { Description = "Rows per batch.", DefaultValueFactory = _ => 2 }.AtLeast(1);
        var seqLen = new Option<int>("--seq-len") { Description = "Tokens per row (documents are packed, with cu_seqlens).", DefaultValueFactory = _ => 64 }.AtLeast(2);
        var seed = new Option<long>("--seed") { Description = "Seed of the synthetic data.", DefaultValueFactory = _ => 0 };
        var device = new Option<string>("--device") { Description = "cpu or cuda[:N].", DefaultValueFactory = _ => "cpu" }.Device();
        var dtype = new Option<string>("--dtype") { Description = "Dtype the weights are loaded in: bf16 or f32.", DefaultValueFactory = _ => "bf16" }.OneOfIgnoringCase("bf16|bfloat16", "f32|fp32|float32");
        var threads = new Option<int>("--threads") { Description = "CPU intra-op threads (0: libtorch's default, one per core). Default 1, as train.", DefaultValueFactory = _ => 1 }.AtLeast(0);
        var json = new Option<bool>("--json") { Description = "Print one JSON object on stdout: main loss, perplexity, each depth's loss and acceptance counts, the expected accepted length." };
        var cmd = new Command("eval", "Evaluate a checkpoint: main loss and perplexity, each MTP depth's loss and top-1 acceptance (unconditioned, and conditioned on the earlier depths as in chained speculative decoding), and the expected accepted length per step.")
        {
            ckpt, data, batches, batch, seqLen, seed, device, dtype, threads, json,
        };
        cmd.SetAction(pr => CommandRunner.Run(() =>
                Run(pr.GetValue(ckpt)!, pr.GetValue(data), new EvalOptions
                {
                    Batches = pr.GetValue(batches), Batch = pr.GetValue(batch), SeqLen = pr.GetValue(seqLen),
                }, pr.GetValue(seed), pr.GetValue(device)!, pr.GetValue(dtype)!, pr.GetValue(threads), pr.GetValue(json)),
            pr.GetValue(GlobalOptions.Verbose), pr.GetValue(json)));
        return cmd;
    }

    static int Run(string ckpt, string? dataPath, EvalOptions options, long seed, string deviceName, string dtypeName, int threads, bool json)
    {
        var device = TorchDevices.Start("eval", ckpt, dataPath, threads, deviceName, seed);
        using var model = MtpModel.Load(ckpt, device, CheckpointIO.ParseDType(dtypeName));
        TokenSource source = dataPath is null ? new SyntheticTokenSource(model.VocabSize, (ulong)seed) : new FileTokenSource(dataPath, model.VocabSize);
        string what = dataPath is null ? $"synthetic stream, seed {seed}" : dataPath;
        var output = CliOutput.Current;
        output.Info($"evaluating {model.Family}: {Units.Count(model.NumHiddenLayers, "layer")} + {Units.Count(model.MtpDepthCount, "MTP depth")}, {model.DType} on {device}, " +
            $"{options.Batches} batch{(options.Batches == 1 ? "" : "es")} of {options.Batch}x{options.SeqLen} ({what})");
        var wall = Stopwatch.StartNew();
        var r = Evaluator.Run(model, source, options);
        double seconds = wall.Elapsed.TotalSeconds;
        if (json)
        {
            var dataJson = dataPath is null
                ? new JsonObject { ["kind"] = "synthetic", ["seed"] = seed }
                : new JsonObject { ["kind"] = "file", ["path"] = dataPath, ["sha256"] = ((FileTokenSource)source).Sha256 };
            CliOutput.Document(new JsonObject
            {
                ["ok"] = true, ["checkpoint"] = ckpt, ["family"] = model.Family, ["device"] = device.ToString(), ["dtype"] = model.DType.ToString(),
                ["data"] = dataJson, ["batches"] = options.Batches, ["batch"] = options.Batch, ["seq_len"] = options.SeqLen, ["tokens"] = r.Tokens,
                ["main"] = new JsonObject { ["loss"] = Num(r.MainLoss), ["perplexity"] = Num(r.Perplexity), ["labels"] = r.MainLabels },
                ["depths"] = new JsonArray(r.Depths.Select(d => (JsonNode)new JsonObject
                {
                    ["depth"] = d.Depth, ["loss"] = Num(d.Loss), ["labels"] = d.Labels, ["accepted"] = d.Accepted, ["acceptance"] = Num(d.Acceptance),
                    ["conditioned_tried"] = d.ChainBase, ["conditioned_accepted"] = d.ChainAccepted, ["conditioned"] = Num(d.Conditioned),
                }).ToArray()),
                ["expected_accepted_length"] = Num(r.ExpectedAcceptedLength), ["expected_length_positions"] = r.Counts.FullyLabeled,
                ["seconds"] = Math.Round(seconds, 3),
            });
            return 0;
        }
        var inv = CultureInfo.InvariantCulture;
        output.Result(string.Format(inv, "main loss {0:F4}, perplexity {1:F2} over {2:N0} labels ({3:N0} tokens)", r.MainLoss, r.Perplexity, r.MainLabels, r.Tokens));
        if (r.Depths.Count > 0)
        {
            var table = new Table().Border(TableBorder.Rounded).AddColumns("depth", "loss", "acceptance", "conditioned");
            foreach (var d in r.Depths)
                table.AddRow(d.Depth.ToString(inv), d.Loss.ToString("F4", inv), Rate(d.Acceptance, d.Accepted, d.Labels), Rate(d.Conditioned, d.ChainAccepted, d.ChainBase));
            output.Render(table);
        }
        output.Result(r.ExpectedAcceptedLength is double len
            ? string.Format(inv, "expected accepted length {0:F4} tokens per step (over {1:N0} positions with every depth's label)", len, r.Counts.FullyLabeled)
            : "expected accepted length: no position has every depth's label (sequences shorter than depths + 2 tokens)");
        output.Info(string.Format(inv, "evaluated in {0:F2} s, {1:N0} tokens/s", seconds, r.Tokens / Math.Max(seconds, 1e-9)));
        return 0;
    }

    // "0.4000 (2/5)", or "- (0/0)" when nothing was counted.
    static string Rate(double? rate, long num, long den) =>
        string.Format(CultureInfo.InvariantCulture, "{0} ({1}/{2})", rate is double x ? x.ToString("F4", CultureInfo.InvariantCulture) : "-", num, den);

    // JSON has no NaN or infinity: such a figure (an overflowing perplexity) is null.
    static JsonNode? Num(double? x) => x is double v && double.IsFinite(v) ? JsonValue.Create(v) : null;
}
