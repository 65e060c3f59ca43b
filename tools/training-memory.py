#!/usr/bin/env python3
"""tools/training-memory.py HF_DIR...: parameters of a Hugging Face checkpoint (a release, or its header-true replica
from `mtp synth --like CONFIG --sparse --header-only`) split into main model and MTP depths, and the memory to hold them
for training in BF16 with the project's AdamW: weights 2 B per parameter; a trained parameter adds its BF16 gradient
(2 B) and two F32 moments (8 B). Activations and the step's temporaries come on top.

Counted from the safetensors headers: scale tensors (*_scale_inv, *.scale, E8M0) are not parameters, packed FP4
experts (I8/U8 under .experts.) hold two parameters per byte, vision-tower tensors are left out (not modelled), and an
MTP depth's embedding / head copies are left out (identical to the main ones in the releases: the training layout
drops them and the depth uses the main model's, frozen under --train mtp)."""
import glob, json, struct, sys

def headers(d):
    for f in sorted(glob.glob(d + "/*.safetensors")):
        with open(f, "rb") as fh:
            n = struct.unpack("<Q", fh.read(8))[0]
            h = json.loads(fh.read(n))
        h.pop("__metadata__", None)
        yield from h.items()

def count(d):
    cfg = json.load(open(d + "/config.json"))
    layers = cfg.get("text_config", cfg)["num_hidden_layers"]
    main = mtp = 0
    for name, t in headers(d):
        if name.endswith("_scale_inv") or name.endswith(".scale") or t["dtype"] == "F8_E8M0" or ".visual." in name:
            continue
        n = 1
        for s in t["shape"]:
            n *= s
        if t["dtype"] in ("I8", "U8") and ".experts." in name:
            n *= 2
        parts = name.split(".")
        in_mtp = parts[0] == "mtp" or ".mtp." in name or (name.startswith("model.layers.") and int(parts[2]) >= layers)
        if in_mtp and (name.endswith("embed_tokens.weight") or name.endswith("shared_head.head.weight")):
            continue
        if in_mtp:
            mtp += n
        else:
            main += n
    return main, mtp

print("| checkpoint | parameters (main + MTP) | BF16 weights | train all (12 B/param) | train MTP only (2 B main + 12 B MTP) |")
print("| --- | --- | --- | --- | --- |")
for d in sys.argv[1:]:
    main, mtp = count(d.rstrip("/"))
    tb = lambda b: f"{b / 1e12:.2f} TB" if b >= 1e12 else f"{b / 1e9:.0f} GB"
    print(f"| {d.rstrip('/').split('/')[-1]} | {(main + mtp) / 1e9:.1f} B ({main / 1e9:.1f} B + {mtp / 1e9:.2f} B) | {tb(2 * (main + mtp))} | {tb(12 * (main + mtp))} | {tb(2 * main + 12 * mtp)} |")
