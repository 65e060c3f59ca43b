using Mtp.SafeTensors;

namespace Mtp.Adapters;

/// <summary>One scheduled piece of an output tensor: a plain copy the writer streams, or a computed piece a worker fills.</summary>
internal sealed class PipelineSlot
{
    /// <summary>The output tensor the piece belongs to.</summary>
    public required PlannedTensor T;
    /// <summary>The piece (a row block of a computed piece, or a whole copy).</summary>
    public required Piece P;
    /// <summary>Computed by a worker into a buffer (else copied straight from the map by the writer).</summary>
    public required bool Computed;
    /// <summary>The computed bytes, once <see cref="Done"/>.</summary>
    public nint Buffer;
    /// <summary>The buffer's capacity (returned to the pool with it).</summary>
    public long Capacity;
    /// <summary>Set by the worker once <see cref="Buffer"/> holds the piece.</summary>
    public bool Done;
    /// <summary>Index (in <see cref="PipelineSchedule.Computed"/>) of a slot that must be done first, or -1.</summary>
    public int WaitFor = -1;
}

/// <summary>
/// The scheduler of the shard pipeline: per shard, its pieces in output order, computed pieces split into row blocks. A
/// re-quantized weight whose scale this run writes after it is scheduled as one quantization producing both
/// (<see cref="WeightAndScalePiece"/>), and the scale's slot waits for it; a scale whose weight is not written before it in
/// this run (another <c>--part</c>) is scheduled as its own recomputation.
/// </summary>
internal sealed class PipelineSchedule
{
    /// <summary>Per shard, its slots in write order.</summary>
    public List<List<PipelineSlot>> PerShard { get; } = new();
    /// <summary>The computed slots, in the order the workers take them.</summary>
    public List<PipelineSlot> Computed { get; } = new();
    /// <summary>Every slot of every shard, in write order (what the read-ahead walks).</summary>
    public List<PipelineSlot> All { get; }
    /// <summary>Source bytes read by <see cref="All"/>[0..i), for i in [0, All.Count].</summary>
    public long[] InputPrefix { get; }
    readonly Dictionary<PipelineSlot, int> _position = new(ReferenceEqualityComparer.Instance);

    /// <summary>Schedules <paramref name="shards"/>, splitting computed pieces into blocks of about <paramref name="blockBytes"/>.</summary>
    public PipelineSchedule(IReadOnlyList<ShardPlan> shards, Dictionary<string, PlannedTensor> byName, long blockBytes)
    {
        var pieces = shards.Select(shard => shard.Tensors.Select(t => byName[t.Name]).SelectMany(pt => pt.Pieces
            .SelectMany(p => p.Direct != null ? new[] { p } : p.Split(Math.Max(1, blockBytes))).Select(p => (pt, p))).ToList()).ToList();
        var handOver = WeightsWithScaleLater(pieces.SelectMany(x => x).Select(x => x.p));
        var quantAt = new Dictionary<QuantPiece, int>();
        foreach (var shard in pieces)
            PerShard.Add(shard.Select(x => x.p.Direct != null ? new PipelineSlot { T = x.pt, P = x.p, Computed = false } : AddComputed(x.pt, x.p, handOver, quantAt)).ToList());
        All = PerShard.SelectMany(x => x).ToList();
        InputPrefix = new long[All.Count + 1];
        for (int f = 0; f < All.Count; f++)
        {
            _position[All[f]] = f;
            InputPrefix[f + 1] = InputPrefix[f] + All[f].P.Inputs.Sum(x => x.Length);
        }
    }

    // The weights whose scale this run writes after them: they hand the scale over instead of it being recomputed.
    static HashSet<QuantPiece> WeightsWithScaleLater(IEnumerable<Piece> run)
    {
        var seen = new HashSet<QuantPiece>();
        var handOver = new HashSet<QuantPiece>();
        foreach (Piece p in run)
        {
            if (p is QuantPiece q) seen.Add(q);
            else if (p is ScaleOfPiece so && seen.Contains(so.Weight)) handOver.Add(so.Weight);
        }
        return handOver;
    }

    PipelineSlot AddComputed(PlannedTensor pt, Piece sub, HashSet<QuantPiece> handOver, Dictionary<QuantPiece, int> quantAt)
    {
        int waitFor = -1;
        Piece piece = sub;
        if (sub is QuantPiece q)
        {
            quantAt[q] = Computed.Count;
            if (handOver.Contains(q)) piece = q.HandingOverScale();
        }
        else if (sub is ScaleOfPiece so)
        {
            if (quantAt.TryGetValue(so.Weight, out int wi)) waitFor = wi;
            else piece = so.Recomputing();
        }
        var slot = new PipelineSlot { T = pt, P = piece, Computed = true, WaitFor = waitFor };
        Computed.Add(slot);
        return slot;
    }

    /// <summary>The position of <paramref name="slot"/> in <see cref="All"/>.</summary>
    public int PositionOf(PipelineSlot slot) => _position[slot];
}
