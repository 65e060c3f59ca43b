using System.Collections.Concurrent;
using Mtp.Quant;
using Mtp.SafeTensors;

namespace Mtp.Adapters;

/// <summary>Plans training-layout tensors from HF sources (headers only).</summary>
internal sealed class NativePlanContext(Checkpoint src, RuleTable table, DType outType, BlockSize uniform, PlanningState planning, bool pow2 = false)
{
    readonly HashSet<string> claimed = planning.Claimed;
    readonly List<string> missing = planning.Missing;

    const long ChunkBytes = 256L << 20;

    static bool IsQuantized(TensorLocation l, bool fp4Allowed) => l.Info.DType == DType.F8_E4M3 || (fp4Allowed && l.Info.DType == DType.I8);

    public DType OutDType(TensorLocation l, Rule r, bool fp4 = false) =>
        IsQuantized(l, fp4) || l.Info.DType == DType.BF16 ? outType : l.Info.DType;

    public long[] LogicalShape(TensorLocation l, Rule r, bool fp4 = false) =>
        fp4 && l.Info.DType == DType.I8 && l.Info.Shape.Length == 2 ? new[] { l.Info.Shape[0], l.Info.Shape[1] * 2 } : l.Info.Shape;

    static ScaleFormat ScaleFormatOf(TensorLocation s) => s.Info.DType switch
    {
        DType.F32 => ScaleFormat.F32,
        DType.BF16 => ScaleFormat.BF16,
        DType.F8_E8M0 => ScaleFormat.E8M0,
        _ => throw new AdapterException(AdapterErrorKind.Malformed, $"{s.File.Path}: tensor '{s.Name}': scale dtype {s.Info.DType} is not F32, BF16 or F8_E8M0"),
    };

    /// <summary>Adds the pieces (and provenance) that turn one source tensor into its training-layout bytes.</summary>
    public bool AddWeightPieces(PlannedTensor p, TensorLocation loc, Rule rule, bool fp4Allowed)
    {
        claimed.Add(loc.Name);
        p.Sources.Add(loc.Name);
        TensorInfo t = loc.Info;
        if (IsQuantized(loc, fp4Allowed))
        {
            string scaleName = table.ScaleNameOf(loc.Name);
            if (!src.TryGet(scaleName, out var scale)) { missing.Add(scaleName); return false; }
            claimed.Add(scaleName);
            p.Sources.Add(scaleName);
            if (t.Shape.Length != 2)
                throw new AdapterException(AdapterErrorKind.Malformed, $"{loc.File.Path}: tensor '{loc.Name}': quantized weight has shape {t.ShapeText}, expected 2-D");
            int rows = checked((int)t.Shape[0]);
            if (t.DType == DType.F8_E4M3)
            {
                int cols = checked((int)t.Shape[1]);
                BlockSize block = TensorBlocks.Of(table.Quant, table.Facts.TextConfig, loc.Name, rows, cols, uniform, scale.Info.Shape);
                var (gr, gc) = block.GridFor(rows, cols);
                if (scale.Info.Shape.Length != 2 || scale.Info.Shape[0] != gr || scale.Info.Shape[1] != gc)
                    throw new AdapterException(AdapterErrorKind.Malformed,
                        $"{scale.File.Path}: tensor '{scaleName}': scale shape {scale.Info.ShapeText} does not fit weight {t.ShapeText} with {TensorBlocks.Expected(table.Quant, table.Facts.TextConfig, loc.Name, rows, cols, uniform)}")
                    { File = scale.File.Path, Tensor = scaleName };
                ScaleFormat sf = ScaleFormatOf(scale);
                p.Pieces.Add(new DequantFp8Piece(Src.Whole(loc), Src.Whole(scale), new Fp8Grid(rows, cols, sf, block), outType, pow2));
                Op(p, $"dequantize FP8 E4M3 with {scale.Info.DType} block scales {block} -> {outType}");
                if (pow2 && sf == ScaleFormat.F32) Op(p, "scale_fmt ue8m0: F32 scales checked to be powers of two");
            }
            else
            {
                int cols = checked((int)t.Shape[1] * 2);
                if (scale.Info.DType != DType.F8_E8M0 || scale.Info.Shape.Length != 2 || scale.Info.Shape[0] != rows || scale.Info.Shape[1] <= 0 || cols % scale.Info.Shape[1] != 0)
                    throw new AdapterException(AdapterErrorKind.Malformed,
                        $"{scale.File.Path}: tensor '{scaleName}': FP4 scale {scale.Info.DType} {scale.Info.ShapeText} does not fit packed weight {t.ShapeText} (expected F8_E8M0 [{rows}, {cols}/group])");
                int group = cols / checked((int)scale.Info.Shape[1]);
                p.Pieces.Add(new DequantFp4Piece(Src.Whole(loc), Src.Whole(scale), rows, cols, group, outType));
                Op(p, $"dequantize packed FP4 E2M1 (I8 pairs, low nibble first) with E8M0 scales per {group} columns -> {outType}");
            }
            return true;
        }
        if (t.DType == DType.BF16 && outType == DType.F32)
        {
            foreach (Src c in Chunks(loc)) p.Pieces.Add(new CastPiece(c, DType.BF16, DType.F32));
            Op(p, "cast BF16 -> F32");
        }
        else
        {
            p.Pieces.Add(new CopyPiece(Src.Whole(loc)));
            Op(p, "copy bytes");
        }
        return true;
    }

    static void Op(PlannedTensor p, string op) { if (!p.Ops.Contains(op)) p.Ops.Add(op); }

    static IEnumerable<Src> Chunks(TensorLocation loc)
    {
        long rowBytes = loc.Info.Shape.Length > 0 && loc.Info.Shape[^1] > 0 ? loc.Info.ByteLength / Math.Max(1, Shapes.Product(loc.Info.Shape.SkipLast(1).ToList())) : loc.Info.ByteLength;
        if (rowBytes <= 0) rowBytes = Math.Max(1, loc.Info.ByteLength);
        long per = Math.Max(1, ChunkBytes / rowBytes) * rowBytes;
        for (long off = 0; off < loc.Info.ByteLength || off == 0; off += per)
        {
            yield return new Src(loc.File, loc.Info, off, Math.Min(per, loc.Info.ByteLength - off));
            if (loc.Info.ByteLength == 0) yield break;
        }
    }

    /// <summary>Plans one MoE layer's routed experts (stacked, or one tensor per expert).</summary>
    public IEnumerable<PlannedTensor> PlanExperts(Binding b, bool perExpert)
    {
        ExpertNames x = b.Rule.Experts!;
        string P = b.Hf, N = b.Native;
        int E = table.Facts.NumExperts;
        if (x.FusedGateUp != null && (src.Contains(P + "." + x.FusedGateUp) || src.Contains(P + "." + x.FusedDown)))
        {
            var outs = new List<PlannedTensor>();
            foreach (var (hf, nat) in new[] { (P + "." + x.FusedGateUp, N + ".gate_up_proj"), (P + "." + x.FusedDown!, N + ".down_proj") })
            {
                if (!src.TryGet(hf, out var loc)) { missing.Add(hf); continue; }
                if (loc.Info.Shape.Length != 3 || loc.Info.Shape[0] != E)
                    throw new AdapterException(AdapterErrorKind.Malformed, $"{loc.File.Path}: tensor '{hf}': fused experts have shape {loc.Info.ShapeText}, expected [{E}, ., .]");
                var p = new PlannedTensor { Name = nat, DType = OutDType(loc, b.Rule), Shape = loc.Info.Shape };
                AddWeightPieces(p, loc, b.Rule, false);
                Op(p, "fused experts (transformers layout) kept as is");
                outs.Add(p);
            }
            return outs;
        }
        var gates = new TensorLocation[E]; var ups = new TensorLocation[E]; var downs = new TensorLocation[E];
        bool ok = true;
        for (int e = 0; e < E; e++)
        {
            var v = new PatternVars(E: e);
            foreach (var (pat, arr) in new[] { (x.Gate, gates), (x.Up, ups), (x.Down, downs) })
            {
                string name = P + "." + new NamePattern(pat).Format(v);
                if (src.TryGet(name, out var loc)) arr[e] = loc;
                else { missing.Add(name); ok = false; }
            }
        }
        if (!ok || E == 0) return Array.Empty<PlannedTensor>();
        long[] gShape = LogicalShape(gates[0], b.Rule, x.Fp4), dShape = LogicalShape(downs[0], b.Rule, x.Fp4);
        for (int e = 0; e < E; e++)
        {
            foreach (var (loc, want) in new[] { (gates[e], gShape), (ups[e], gShape), (downs[e], dShape) })
            {
                var have = LogicalShape(loc, b.Rule, x.Fp4);
                if (!have.SequenceEqual(want) || have.Length != 2)
                    throw new AdapterException(AdapterErrorKind.Malformed, $"{loc.File.Path}: tensor '{loc.Name}': shape {Shapes.Format(have)} differs from expert 0's {Shapes.Format(want)}");
                if (loc.Info.DType != gates[0].Info.DType && !(IsQuantized(loc, x.Fp4) && IsQuantized(gates[0], x.Fp4)))
                    throw new AdapterException(AdapterErrorKind.Malformed, $"{loc.File.Path}: tensor '{loc.Name}': dtype {loc.Info.DType} differs from expert 0's {gates[0].Info.DType}");
            }
        }
        if (gShape[0] != dShape[1] || gShape[1] != dShape[0])
            throw new AdapterException(AdapterErrorKind.Malformed, $"{downs[0].File.Path}: tensor '{downs[0].Name}': down {Shapes.Format(dShape)} does not transpose gate {Shapes.Format(gShape)}");
        DType dt = OutDType(gates[0], b.Rule, x.Fp4);
        if (perExpert)
        {
            var outs = new List<PlannedTensor>();
            for (int e = 0; e < E; e++)
                foreach (var (loc, sub, shape) in new[] { (gates[e], "gate_proj", gShape), (ups[e], "up_proj", gShape), (downs[e], "down_proj", dShape) })
                {
                    var p = new PlannedTensor { Name = $"{N}.{e}.{sub}.weight", DType = dt, Shape = shape };
                    AddWeightPieces(p, loc, b.Rule, x.Fp4);
                    outs.Add(p);
                }
            return outs;
        }
        var gu = new PlannedTensor { Name = N + ".gate_up_proj", DType = dt, Shape = new[] { E, 2 * gShape[0], gShape[1] } };
        var dn = new PlannedTensor { Name = N + ".down_proj", DType = dt, Shape = new[] { E, dShape[0], dShape[1] } };
        for (int e = 0; e < E; e++)
        {
            AddWeightPieces(gu, gates[e], b.Rule, x.Fp4);
            AddWeightPieces(gu, ups[e], b.Rule, x.Fp4);
            AddWeightPieces(dn, downs[e], b.Rule, x.Fp4);
        }
        Op(gu, $"stack {E} experts: gate_up_proj[e] = concat(gate_e, up_e) rows");
        Op(dn, $"stack {E} experts: down_proj[e] = down_e");
        return new[] { gu, dn };
    }
}

/// <summary>Plans HF tensors from training-layout sources.</summary>
internal sealed class HfPlanContext(HfPlanInputs inputs, ConcurrentDictionary<string, byte[]> cache, PlanningState planning, bool pow2 = false)
{
    readonly Checkpoint nat = inputs.Nat;
    readonly Checkpoint? reference = inputs.Reference;
    readonly RuleTable table = inputs.Table;
    readonly Dictionary<string, (DType DType, long[] Shape)> hints = inputs.Hints;
    readonly DType? forceType = inputs.ForceType;
    readonly BlockSize uniform = inputs.Block;
    readonly HashSet<string> claimed = planning.Claimed;
    readonly List<string> missing = planning.Missing;

    public List<QuantPiece> QuantPieces { get; } = new();
    int _order;

    static bool IsFloat(DType d) => d is DType.BF16 or DType.F32;

    Src? RefSrc(string name) => reference != null && reference.TryGet(name, out var l) ? Src.Whole(l) : null;

    public IEnumerable<PlannedTensor> PlanWeight(string hfName, Src input, long[] shape, Rule rule, bool fp4)
    {
        DType nt = input.Info.DType;
        var ord = (0, (long)_order++);
        DType target;
        if (forceType is DType ft) target = IsFloat(nt) ? ft : nt;
        else if (hints.TryGetValue(hfName, out var h)) target = h.DType;
        else target = nt;

        if ((target == DType.F8_E4M3 || (target == DType.I8 && fp4)) && IsFloat(nt))
        {
            if (shape.Length != 2)
                throw new AdapterException(AdapterErrorKind.Malformed, $"tensor '{input.Name}': shape {Shapes.Format(shape)} cannot be quantized (2-D expected)");
            int rows = checked((int)shape[0]), cols = checked((int)shape[1]);
            string scaleName = table.ScaleNameOf(hfName);
            hints.TryGetValue(scaleName, out var sh);
            bool isFp4 = target == DType.I8;
            long[] wShape, sShape;
            ScaleFormat sf;
            DType sType;
            int group = table.Quant.Fp4Group;
            BlockSize block = uniform;
            if (isFp4)
            {
                if (cols % 2 != 0)
                    throw new AdapterException(AdapterErrorKind.Malformed, $"{input.File.Path}: tensor '{input.Name}': FP4 target '{hfName}' needs an even column count, not {cols} (two values per byte)")
                    { File = input.File.Path, Tensor = input.Name };
                if (sh.Shape is { Length: 2 } && sh.Shape[1] > 0 && cols % sh.Shape[1] == 0) group = cols / (int)sh.Shape[1];
                wShape = new long[] { rows, cols / 2 };
                sShape = new long[] { rows, (cols + group - 1) / group };
                sf = ScaleFormat.E8M0; sType = DType.F8_E8M0;
            }
            else
            {
                block = TensorBlocks.Of(table.Quant, table.Facts.TextConfig, hfName, rows, cols, uniform, sh.Shape);
                var (gr, gc) = block.GridFor(rows, cols);
                wShape = new long[] { rows, cols };
                sShape = new long[] { gr, gc };
                sType = sh.Shape != null ? sh.DType : table.Quant.ScaleDType;
                sf = sType switch
                {
                    DType.F32 => ScaleFormat.F32, DType.BF16 => ScaleFormat.BF16, DType.F8_E8M0 => ScaleFormat.E8M0,
                    _ => throw new AdapterException(AdapterErrorKind.Malformed, $"reference tensor '{scaleName}': scale dtype {sType} is not F32, BF16 or F8_E8M0"),
                };
            }
            CheckHintShape(hfName, wShape);
            CheckHintShape(scaleName, sShape);
            Src? rc = RefSrc(hfName), rs = RefSrc(scaleName);
            if (rc != null && rs == null) rc = null;
            long scaleBytes = sType.ByteSize(Shapes.Product(sShape))!.Value;
            var qt = new QuantTarget
            {
                WeightName = hfName, ScaleName = scaleName, Rows = rows, Cols = cols, Fp4 = isFp4, ScaleFormat = sf, Block = block, Group = group,
                ScaleBytes = scaleBytes, Pow2 = pow2,
            };
            var q = new QuantPiece(qt, input, nt, (rc, rs), cache);
            QuantPieces.Add(q);
            var w = new PlannedTensor { Name = hfName, DType = isFp4 ? DType.I8 : DType.F8_E4M3, Shape = wShape, Order = ord };
            w.Sources.Add(input.Name);
            w.Ops.Add(isFp4 ? $"quantize to packed FP4 E2M1 with E8M0 scales per {group} columns" : $"quantize to FP8 E4M3 with {sType} block scales {block}");
            w.Ops.Add(rc != null ? "reuse the reference scale (byte-identical when unchanged)" : "canonical scales");
            if (pow2 && !isFp4 && sf == ScaleFormat.F32) w.Ops.Add("scale_fmt ue8m0: power-of-two F32 scales");
            w.Pieces.Add(q);
            var s = new PlannedTensor { Name = scaleName, DType = sType, Shape = sShape, Order = (0, (long)_order++) };
            s.Sources.Add(input.Name);
            s.Ops.Add("scale of " + hfName);
            s.Pieces.Add(new ScaleOfPiece(q, cache));
            return new[] { w, s };
        }
        var p = new PlannedTensor { Name = hfName, DType = target, Shape = shape, Order = ord };
        p.Sources.Add(input.Name);
        if (target == nt) { p.Pieces.Add(new CopyPiece(input)); p.Ops.Add("copy bytes"); }
        else if (IsFloat(target) && IsFloat(nt)) { p.Pieces.Add(new CastPiece(input, nt, target)); p.Ops.Add($"cast {nt} -> {target}"); }
        else throw new AdapterException(AdapterErrorKind.Malformed, $"tensor '{input.Name}': {nt} cannot become {target} (HF '{hfName}')");
        CheckHintShape(hfName, shape);
        return new[] { p };
    }

    void CheckHintShape(string name, long[] shape)
    {
        if (reference != null && hints.TryGetValue(name, out var h) && !h.Shape.SequenceEqual(shape))
            throw new AdapterException(AdapterErrorKind.Inconsistent, $"tensor '{name}': would be written as {Shapes.Format(shape)} but the reference has {Shapes.Format(h.Shape)}");
    }

    public IEnumerable<PlannedTensor> PlanExperts(Binding b)
    {
        ExpertNames x = b.Rule.Experts!;
        string P = b.Hf, N = b.Native;
        int E = table.Facts.NumExperts;
        var outs = new List<PlannedTensor>();
        bool stacked = nat.Contains(N + ".gate_up_proj") || nat.Contains(N + ".down_proj");
        bool perExpertNative = !stacked && nat.Contains(N + ".0.gate_proj.weight");
        if (!stacked && !perExpertNative) { missing.Add(N + ".gate_up_proj"); missing.Add(N + ".down_proj"); return outs; }
        bool fusedHf = x.FusedGateUp != null && hints.ContainsKey(P + "." + x.FusedGateUp);
        string Hf(string pat, int e) => P + "." + new NamePattern(pat).Format(new PatternVars(E: e));
        if (stacked)
        {
            if (!nat.TryGet(N + ".gate_up_proj", out var gu)) { missing.Add(N + ".gate_up_proj"); return outs; }
            if (!nat.TryGet(N + ".down_proj", out var dn)) { missing.Add(N + ".down_proj"); return outs; }
            claimed.Add(gu.Name); claimed.Add(dn.Name);
            long[] gs = gu.Info.Shape, ds = dn.Info.Shape;
            if (gs.Length == 3 && ds.Length == 3 && (gs[0] != E || ds[0] != E))
                throw new AdapterException(AdapterErrorKind.Inconsistent, $"{gu.File.Path}: experts '{gu.Name}' {gu.Info.ShapeText} / '{dn.Name}' {dn.Info.ShapeText} hold {gs[0]} / {ds[0]} experts but config.json says {E}")
                { File = gu.File.Path, Tensor = gu.Name };
            if (gs.Length != 3 || ds.Length != 3 || gs[0] != E || ds[0] != E || gs[1] % 2 != 0 || gs[1] / 2 != ds[2] || gs[2] != ds[1])
                throw new AdapterException(AdapterErrorKind.Malformed, $"{gu.File.Path}: experts '{gu.Name}' {gu.Info.ShapeText} / '{dn.Name}' {dn.Info.ShapeText} are not [E={E}, 2I, H] / [E, H, I]");
            if (fusedHf)
            {
                outs.AddRange(PlanWeight(P + "." + x.FusedGateUp, Src.Whole(gu), gs, b.Rule, false));
                outs.AddRange(PlanWeight(P + "." + x.FusedDown, Src.Whole(dn), ds, b.Rule, false));
                return outs;
            }
            long I = gs[1] / 2, H = gs[2];
            int es = gu.Info.DType == DType.F32 ? 4 : 2;
            long mat = I * H * es;
            for (int e = 0; e < E; e++)
            {
                outs.AddRange(PlanWeight(Hf(x.Gate, e), new Src(gu.File, gu.Info, (2 * e) * mat, mat), new[] { I, H }, b.Rule, x.Fp4));
                outs.AddRange(PlanWeight(Hf(x.Up, e), new Src(gu.File, gu.Info, (2 * e + 1) * mat, mat), new[] { I, H }, b.Rule, x.Fp4));
                outs.AddRange(PlanWeight(Hf(x.Down, e), new Src(dn.File, dn.Info, e * mat, mat), new[] { H, I }, b.Rule, x.Fp4));
            }
            return outs;
        }
        if (fusedHf) throw new AdapterException(AdapterErrorKind.Usage, $"{N}: per-expert training layout cannot be written back into the fused HF layout");
        for (int e = 0; e < E; e++)
            foreach (var (sub, pat) in new[] { ("gate_proj", x.Gate), ("up_proj", x.Up), ("down_proj", x.Down) })
            {
                string n = $"{N}.{e}.{sub}.weight";
                if (!nat.TryGet(n, out var loc)) { missing.Add(n); continue; }
                claimed.Add(n);
                outs.AddRange(PlanWeight(Hf(pat, e), Src.Whole(loc), loc.Info.Shape, b.Rule, x.Fp4));
            }
        return outs;
    }
}
