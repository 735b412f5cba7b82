#!/usr/bin/env python3
"""Writes the seed corpus of every fuzz target (tests/fuzz/corpus/<target>/):
a few small valid inputs and near-valid ones (one field wrong), in the input
format each target's header comment describes. The seeds of fuzz_lm_checkpoint
are the metadata of a real checkpoint, written by a one-step
`train_lm --level word` run (the path of train_lm is the argument; default
build/train_lm).

    python3 tests/fuzz/make_corpus.py [TRAIN_LM]
"""
import gzip
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.abspath(__file__))


def write_seeds(target, seeds):
    folder = os.path.join(ROOT, "corpus", target)
    shutil.rmtree(folder, ignore_errors=True)
    os.makedirs(folder)
    for name, data in seeds.items():
        with open(os.path.join(folder, name), "wb") as f:
            f.write(data if isinstance(data, bytes) else data.encode())


# ---- safetensors ----

def safetensors(header, data=b""):
    text = json.dumps(header, separators=(",", ":")).encode()
    return struct.pack("<Q", len(text)) + text + data


def safetensors_seeds():
    f32 = struct.pack("<6f", 1, -2, 3.5, 0, 1e-3, 7)
    i64 = struct.pack("<2q", -1, 5)
    good = {
        "__metadata__": {"format": "pt", "step": "3"},
        "w": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 24]},
        "i": {"dtype": "I64", "shape": [2], "data_offsets": [24, 40]},
        "b": {"dtype": "BOOL", "shape": [3], "data_offsets": [40, 43]},
        "d": {"dtype": "F64", "shape": [], "data_offsets": [43, 51]},
        "e": {"dtype": "F32", "shape": [0, 4], "data_offsets": [51, 51]},
    }
    data = f32 + i64 + b"\x01\x00\x01" + struct.pack("<d", 2.5)
    seeds = {"valid": safetensors(good, data), "empty_header": safetensors({}), "fixture_inputs":
             open(os.path.join(ROOT, "..", "fixtures", "run_layer", "inputs.safetensors"), "rb").read()}

    def variant(name, **changes):
        h = json.loads(json.dumps(good))
        for key, value in changes.items():
            h[key] = value
        seeds[name] = safetensors(h, data)

    variant("overlap", i={"dtype": "I64", "shape": [2], "data_offsets": [16, 32]})
    variant("past_end", d={"dtype": "F64", "shape": [], "data_offsets": [51, 59]})
    variant("size_mismatch", w={"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 24]})
    variant("huge_offsets", e={"dtype": "F32", "shape": [0], "data_offsets": [2**63, 2**64 - 1]})
    variant("huge_shape", e={"dtype": "F32", "shape": [0, 2**62, 2**62], "data_offsets": [51, 51]})
    variant("bad_dtype", b={"dtype": "BF16", "shape": [3], "data_offsets": [40, 43]})
    variant("bad_metadata", __metadata__={"step": 3})
    seeds["bad_bool"] = safetensors(good, f32 + i64 + b"\x01\x02\x01" + struct.pack("<d", 2.5))
    seeds["truncated"] = safetensors(good, data)[:-5]
    seeds["header_too_long"] = struct.pack("<Q", 1 << 40) + b"{}"
    write_seeds("fuzz_safetensors", seeds)


# ---- IDX (first byte: bit 0 gzip the rest, bit 1 labels) ----

def idx(magic, dims, data):
    return struct.pack(">I", magic) + b"".join(struct.pack(">I", d) for d in dims) + bytes(data)


def idx_seeds():
    pixels = [(i * 37 + 11) % 256 for i in range(2 * 3 * 3)]
    images, labels = idx(0x803, [2, 3, 3], pixels), idx(0x801, [4], [0, 9, 3, 1])
    write_seeds("fuzz_idx", {
        "images": b"\x00" + images,
        "labels": b"\x02" + labels,
        "images_gzip": b"\x01" + images,
        "labels_gzip": b"\x03" + labels,
        "images_gz_file": b"\x00" + gzip.compress(images, mtime=0),
        "truncated": b"\x00" + images[:-3],
        "extra_byte": b"\x02" + labels + b"\x00",
        "zero_dim": b"\x00" + idx(0x803, [2, 0, 3], []),
        "wrong_magic": b"\x02" + idx(0x803, [4], [0, 1, 2, 3]),
    })


# ---- text data (first byte: mode; three parameter bytes; then the text) ----

def text_seeds():
    text = "the lord said unto moses\nand moses went <unk> unto the land\n\n  the end"
    write_seeds("fuzz_text_data", {
        "bytes": b"\x00\x00\x00\x00" + "caf\u00e9\t\x00\xff\n".encode("latin-1", "replace"),
        "words": b"\x01\x01\x00\x00" + text.encode(),
        "words_min_count_max_size": b"\x01\x02\x03\x00" + text.encode(),
        "vocab_word": b"\x02\x00\x00\x00" + b"moegrad-vocab word 4\n<unk>\n<eol>\nthe\nlord\n",
        "vocab_byte": b"\x02\x00\x00\x00" + b"moegrad-vocab byte 256\n",
        "vocab_bad_count": b"\x02\x00\x00\x00" + b"moegrad-vocab word 5\n<unk>\n<eol>\nthe\nlord\n",
        "vocab_duplicate": b"\x02\x00\x00\x00" + b"moegrad-vocab word 4\n<unk>\n<eol>\nthe\nthe\n",
        "corpus_bytes": b"\x03\x00\x02\x03" + b"train text here\x00valid text\x00test text",
        "corpus_words": b"\x03\x01\x01\x02" + (text + "\x00" + text + "\x00the end\n").encode(),
        "corpus_missing_split": b"\x03\x01\x01\x02" + b"only train\x00",
    })


# ---- run_layer (config, optionally NUL and {tensor: shape}) ----

def layer_seeds():
    seeds = {"fixture_config": open(os.path.join(ROOT, "..", "fixtures", "run_layer", "config.json")).read()}

    def seed(name, config, inputs):
        seeds[name] = json.dumps(config) + "\0" + json.dumps(inputs)

    seed("linear", {"layer": "linear", "in_features": 4, "out_features": 3, "init_seed": 1},
         {"x": [2, 4], "grad_in.y": [2, 3]})
    seed("linear_params", {"layer": "linear", "in_features": 4, "out_features": 3, "bias": False, "dtype": "float64"},
         {"x": [2, 4], "grad_in.y": [2, 3], "param.weight": [3, 4]})
    seed("layernorm", {"layer": "layernorm", "dim": 4, "eps": 1e-5, "init_seed": 0}, {"x": [3, 4], "grad_in.y": [3, 4]})
    seed("attention", {"layer": "attention", "dim": 4, "heads": 2, "causal": True, "init_seed": 0},
         {"x": [1, 3, 4], "grad_in.y": [1, 3, 4]})
    seed("elliptical_attention", {"layer": "elliptical_attention", "dim": 4, "heads": 2, "init_seed": 0},
         {"x": [1, 3, 4], "prev_values": [1, 2, 3, 2], "grad_in.y": [1, 3, 4]})
    router = {"dim": 4, "experts": 4, "k": 2, "init_seed": 0}
    router_grads = {"grad_in.scores": [3, 2], "grad_in.logits": [3, 4]}
    seed("topk_router", dict(router, layer="topk_router", gate="cosine"), dict(router_grads, x=[3, 4]))
    seed("ac_router", dict(router, layer="ac_router", ac={"stat": "variance", "mix": 1, "differentiable": True}),
         dict(router_grads, x=[3, 4], prev_indices=[3, 1], prev_logits=[3, 1]))
    moe = {"layer": "moe", "dim": 4, "hidden": 8, "experts": 4, "k": 2, "init_seed": 0}
    seed("moe", dict(moe, capacity_factor=1.5), {"x": [3, 4], "grad_in.y": [3, 4]})
    seed("moe_ac", dict(moe, use_ac=True, scale_expert_input=True, ac={"scaling": "global"}),
         {"x": [3, 4], "grad_in.y": [3, 4], "prev_indices": [3, 2], "prev_logits": [3, 2]})
    soft = {"layer": "soft_moe", "dim": 4, "hidden": 8, "experts": 4, "slots": 1, "init_seed": 0}
    seed("soft_moe", soft, {"x": [1, 3, 4], "grad_in.y": [1, 3, 4]})
    seed("soft_moe_ac", dict(soft, use_ac=True, ac={"stat": "mad"}),
         {"x": [1, 3, 4], "grad_in.y": [1, 3, 4], "prev_indices": [3, 1], "prev_logits": [3, 1]})
    seed("unknown_key", {"layer": "linear", "in_features": 4, "out_features": 3, "init_seed": 1, "colour": "red"},
         {"x": [2, 4], "grad_in.y": [2, 3]})
    seed("wrong_shape", {"layer": "linear", "in_features": 4, "out_features": 3, "init_seed": 1},
         {"x": [2, 5], "grad_in.y": [2, 3]})
    write_seeds("fuzz_layer_runner", seeds)


# ---- checkpoint metadata (NUL-separated key, value, ...) ----

def metadata_bytes(meta):
    return b"\0".join(k.encode() + b"\0" + v.encode() for k, v in meta.items())


def checkpoint_seeds(train_lm):
    with tempfile.TemporaryDirectory() as tmp:
        data = os.path.join(tmp, "data")
        os.makedirs(data)
        for split in ("train", "valid", "test"):
            with open(os.path.join(data, split + ".txt"), "w") as f:
                f.write("the lord said unto moses\n" * 80)
        out = os.path.join(tmp, "run")
        subprocess.run([train_lm, "--data", data, "--level", "word", "--steps", "1", "--threads", "1",
                        "--out", out], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        with open(os.path.join(out, "checkpoint.safetensors"), "rb") as f:
            n = struct.unpack("<Q", f.read(8))[0]
            meta = json.loads(f.read(n))["__metadata__"]
    config, rng = json.loads(meta["config"]), json.loads(meta["rng"])
    seeds = {"valid": metadata_bytes(meta)}

    def variant(name, **changes):
        seeds[name] = metadata_bytes(dict(meta, **changes))

    variant("step_beyond", step="1001")
    variant("step_not_a_number", step="1e3")
    variant("wrong_format", format="moegrad-lm-checkpoint-0")
    variant("byte_vocab", vocab="moegrad-vocab byte 256\n")
    variant("other_option", config=json.dumps(dict(config, dim=64)))
    variant("rng_missing", rng=json.dumps({k: v for k, v in rng.items() if k != "batch"}))
    variant("rng_negative", rng=json.dumps(dict(rng, batch=[-1, 8])))
    write_seeds("fuzz_lm_checkpoint", seeds)


if __name__ == "__main__":
    safetensors_seeds()
    idx_seeds()
    text_seeds()
    layer_seeds()
    checkpoint_seeds(sys.argv[1] if len(sys.argv) > 1 else "build/train_lm")
