#!/usr/bin/python3
"""Writes the PyTorch reference fixtures that tests/moe/test_fixtures.cpp matches.

Independent PyTorch implementations (float64) of
  1. a small transformer LM with the architecture "sgsc": attention, a top-k MoE
     layer, attention, an AC MoE layer (MAD, eps 1e-4, clip 10, per-feature
     scaling, detached W, labels = the previous MoE layer's top-1);
  2. a Soft MoE layer with AC (eps 0.35, clip 5, global scaling, mixing over
     the previous top-2 with the softmax of their logits, detached W).
Each fixture holds the inputs, every parameter (param.<name>, named as
moegrad's Module::named_parameters), the outputs (out.*) and the gradient of a
scalar objective with respect to every parameter (grad.<name>) and input.

Run with Debian's python3-torch:  /usr/bin/python3 tools/make_fixtures.py
The library and its tests never run Python; the fixtures are committed.
"""
import json
import math
import os
import struct

import torch
import torch.nn.functional as F

torch.manual_seed(0)
DT = torch.float64
OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures")


def save_safetensors(path, tensors):
    """Minimal safetensors writer: u64 header length, JSON header, raw bytes."""
    header, blobs, offset = {}, [], 0
    for name in sorted(tensors):
        t = tensors[name].detach().contiguous()
        dtype = {torch.float64: "F64", torch.float32: "F32", torch.int64: "I64"}[t.dtype]
        data = t.numpy().tobytes()
        header[name] = {"dtype": dtype, "shape": list(t.shape), "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * ((8 - len(raw) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(raw)))
        f.write(raw)
        for b in blobs:
            f.write(b)


def param(shape, std=0.3):
    return (torch.randn(*shape, dtype=DT) * std).requires_grad_()


def gelu(x):
    return F.gelu(x, approximate="tanh")


def layer_norm(x, p, prefix):
    return F.layer_norm(x, x.shape[-1:], p[prefix + ".weight"], p[prefix + ".bias"], 1e-5)


def attention(x, p, prefix, heads):
    B, T, d = x.shape
    qkv = x @ p[prefix + ".qkv.weight"].T + p[prefix + ".qkv.bias"]
    q, k, v = qkv.reshape(B, T, 3, heads, d // heads).permute(2, 0, 3, 1, 4)
    scores = q @ k.transpose(-1, -2) / math.sqrt(d // heads)
    mask = torch.ones(T, T, dtype=torch.bool).triu(1)
    probs = scores.masked_fill(mask, float("-inf")).softmax(-1)
    y = (probs @ v).permute(0, 2, 1, 3).reshape(B, T, d)
    return y @ p[prefix + ".proj.weight"].T + p[prefix + ".proj.bias"]


def ac_weights(x, labels, E, eps, clip, per_feature, mad=True):
    """The AC equations of docs/design.md, written directly (no gradient)."""
    with torch.no_grad():
        n, d = x.shape
        W = torch.empty(E, d, dtype=x.dtype)
        for e in range(E):
            xe = x[labels == e]
            if len(xe) == 0:
                s = torch.zeros(d, dtype=x.dtype)
            else:
                r = xe - xe.mean(0)
                s = r.abs().mean(0) if mad else (r * r).mean(0)
            W[e] = 1.0 / (s + eps)
        W = torch.minimum(W, clip * W.mean())
        return W / W.mean(0, keepdim=True) if per_feature else W / W.mean()


def experts(xp_rows, p, prefix, e):
    h = gelu(xp_rows @ p[prefix + "experts.w1"][e].T + p[prefix + "experts.b1"][e])
    return h @ p[prefix + "experts.w2"][e].T + p[prefix + "experts.b2"][e]


def moe_layer(x, p, prefix, E, k, prev=None):
    """Top-k MoE (prev None) or AC MoE (prev = previous top-k indices)."""
    if prev is not None:
        labels = prev[:, 0]
        W = ac_weights(x.detach(), labels, E, 1e-4, 10.0, True)
        x_route = x * W[labels]
    else:
        x_route = x
    logits = x_route @ p[prefix + ".router.weight"].T + p[prefix + ".router.bias"]
    top_val, top_idx = logits.topk(k, dim=-1, sorted=True)
    scores = top_val.softmax(-1)
    y = torch.zeros_like(x)
    for e in range(E):
        for j in range(k):
            rows = (top_idx[:, j] == e).nonzero().flatten()
            if len(rows):
                y = y.index_add(0, rows, scores[rows, j:j + 1] * experts(x[rows], p, prefix + ".", e))
    f = torch.bincount(top_idx.flatten(), minlength=E).to(DT) / top_idx.numel()
    balance = E * (f * logits.softmax(-1).mean(0)).sum()
    z = (torch.logsumexp(logits, -1) ** 2).mean()
    return y, top_idx, balance, z


def lm_fixture():
    V, L, d, H, E, k, hidden, B, T = 13, 8, 8, 2, 4, 2, 6, 2, 5
    arch = "sgsc"
    p = {"tokens.weight": param((V, d)), "positions.weight": param((L, d)),
         "final_norm.weight": param((d,), 0.1).detach().add_(1).requires_grad_(),
         "final_norm.bias": param((d,), 0.1), "head.weight": param((V, d))}
    for i, c in enumerate(arch):
        pre = "layers.%d" % i
        p[pre + ".norm.weight"] = param((d,), 0.1).detach().add_(1).requires_grad_()
        p[pre + ".norm.bias"] = param((d,), 0.1)
        if c == "s":
            p[pre + ".attn.qkv.weight"], p[pre + ".attn.qkv.bias"] = param((3 * d, d)), param((3 * d,))
            p[pre + ".attn.proj.weight"], p[pre + ".attn.proj.bias"] = param((d, d)), param((d,))
        else:
            m = pre + ".moe"
            p[m + ".router.weight"], p[m + ".router.bias"] = param((E, d), 1.0), param((E,))
            p[m + ".experts.w1"], p[m + ".experts.b1"] = param((E, hidden, d)), param((E, hidden))
            p[m + ".experts.w2"], p[m + ".experts.b2"] = param((E, d, hidden)), param((E, d))
    ids = torch.randint(0, V, (B, T))
    targets = torch.randint(0, V, (B, T))
    targets[0, 1] = -100  # an ignored position

    h = p["tokens.weight"][ids] + p["positions.weight"][:T]
    prev, balance, z = None, 0, 0
    for i, c in enumerate(arch):
        pre = "layers.%d" % i
        x = layer_norm(h, p, pre + ".norm")
        if c == "s":
            out = attention(x, p, pre + ".attn", H)
        else:
            y, prev_new, bl, zl = moe_layer(x.reshape(B * T, d), p, pre + ".moe", E, k, prev if c == "c" else None)
            prev, balance, z = prev_new, balance + bl, z + zl
            out = y.reshape(B, T, d)
        h = h + out
    logits = layer_norm(h, p, "final_norm") @ p["head.weight"].T
    loss = F.cross_entropy(logits.reshape(B * T, V), targets.reshape(B * T), ignore_index=-100)
    objective = loss + 0.01 * balance + 0.001 * z
    objective.backward()
    t = {"inputs.ids": ids, "inputs.targets": targets, "out.logits": logits, "out.loss": loss,
         "out.balance_loss": balance, "out.z_loss": z}
    for name, v in p.items():
        t["param." + name] = v
        t["grad." + name] = v.grad
    save_safetensors(os.path.join(OUT, "lm_sgsc_ac.safetensors"), t)


def soft_moe_fixture():
    b, m, d, E, P, hidden, mix_k = 2, 5, 6, 3, 2, 7, 2
    p = {"phi": param((d, E * P), 1 / math.sqrt(d)), "scale": torch.ones(1, dtype=DT).requires_grad_(),
         "experts.w1": param((E, hidden, d)), "experts.b1": param((E, hidden)),
         "experts.w2": param((E, d, hidden)), "experts.b2": param((E, d))}
    x = torch.randn(b, m, d, dtype=DT).requires_grad_()
    prev_idx = torch.stack([torch.randperm(E)[:mix_k] for _ in range(b * m)])
    prev_logits = torch.randn(b * m, mix_k, dtype=DT)

    xn = x / torch.sqrt((x * x).sum(-1, keepdim=True) + 1e-6)  # the paper's l2_normalize epsilon
    with torch.no_grad():
        W = ac_weights(xn.reshape(b * m, d), prev_idx[:, 0], E, 0.35, 5.0, False)
        w = (prev_logits.softmax(-1).unsqueeze(-1) * W[prev_idx]).sum(1)
    xn = xn * w.reshape(b, m, d)
    phi = p["scale"] * p["phi"] / torch.sqrt((p["phi"] ** 2).sum(0, keepdim=True) + 1e-6)
    logits = xn @ phi                                  # [b, m, E*P]
    D = logits.softmax(1)
    C = logits.softmax(2)
    slots = D.transpose(1, 2) @ xn                     # [b, E*P, d]
    ys = torch.empty_like(slots)
    for e in range(E):
        s = slots[:, e * P:(e + 1) * P]
        ys[:, e * P:(e + 1) * P] = experts(s, p, "", e)
    y = C @ ys
    top_val, top_slot = C.reshape(b * m, E * P).topk(mix_k, -1)
    dy = torch.linspace(-1, 1, y.numel(), dtype=DT).reshape(y.shape)
    (y * dy).sum().backward()
    t = {"inputs.x": x, "inputs.dy": dy, "inputs.prev_indices": prev_idx, "inputs.prev_logits": prev_logits, "out.y": y,
         "out.next_indices": top_slot // P, "grad.x": x.grad}
    for name, v in p.items():
        t["param." + name] = v
        t["grad." + name] = v.grad
    save_safetensors(os.path.join(OUT, "soft_moe_ac.safetensors"), t)


if __name__ == "__main__":
    os.makedirs(OUT, exist_ok=True)
    lm_fixture()
    soft_moe_fixture()
    print("wrote", sorted(os.listdir(OUT)))
