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
/// The scheduler of the shard pipeline: per shard, its pieces in output order, computed pieces split into row blocks; a
/// scale written after its weight waits for the weight's slot and takes its scale from the cache, a scale whose weight is
/// not written in this run (another <c>--part</c>) recomputes it.
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
        var quantAt = new Dictionary<QuantPiece, int>();
        foreach (ShardPlan shard in shards)
        {
            var list = new List<PipelineSlot>();
            foreach (TensorSpec t in shard.Tensors)
            {
                PlannedTensor pt = byName[t.Name];
                foreach (Piece p in pt.Pieces)
                {
                    if (p.Direct != null) { list.Add(new PipelineSlot { T = pt, P = p, Computed = false }); continue; }
                    foreach (Piece sub in p.Split(Math.Max(1, blockBytes))) list.Add(AddComputed(pt, sub, quantAt));
                }
            }
            PerShard.Add(list);
        }
        All = PerShard.SelectMany(x => x).ToList();
        InputPrefix = new long[All.Count + 1];
        for (int f = 0; f < All.Count; f++)
        {
            _position[All[f]] = f;
            InputPrefix[f + 1] = InputPrefix[f] + All[f].P.Inputs.Sum(x => x.Length);
        }
    }

    PipelineSlot AddComputed(PlannedTensor pt, Piece sub, Dictionary<QuantPiece, int> quantAt)
    {
        var slot = new PipelineSlot { T = pt, P = sub, Computed = true };
        if (sub is QuantPiece q) { q.KeepScale = false; quantAt[q] = Computed.Count; }
        else if (sub is ScaleOfPiece so && quantAt.TryGetValue(so.Weight, out int wi)) { so.Weight.KeepScale = true; slot.WaitFor = wi; }
        else if (sub is ScaleOfPiece orphan) orphan.Recompute = true;
        Computed.Add(slot);
        return slot;
    }

    /// <summary>The position of <paramref name="slot"/> in <see cref="All"/>.</summary>
    public int PositionOf(PipelineSlot slot) => _position[slot];
}
