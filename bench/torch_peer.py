#!/usr/bin/env python3
"""PyTorch's side of the comparison: the cases of bench/moegrad_bench.cpp,
written as a PyTorch user would write them in eager mode, with the same
shapes, flags and JSON output line (bench/compare.py runs both).

    torch_peer.py train_step|moe_layer|ac_router|gemm|attention [flags as moegrad_bench]

The models mirror moegrad's: pre-norm residual sublayers, learned positional
embeddings, causal attention with a fused qkv projection, MoE layers with a
linear gate, sorted top-k, softmax over the k logits, the Switch balance
loss, token rows sorted by expert and one Linear-GELU(tanh)-Linear per
expert, and the AC router of docs/design.md (MAD, eps 1e-4, clip 10, per-feature
scaling, W detached). Runs on the CPU by default; --device cuda times with
synchronisation and reports the CUDA allocator's peak instead of the RSS.
"""
import argparse
import json
import math
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


def gelu(x):
    return F.gelu(x, approximate="tanh")


class Attention(nn.Module):
    def __init__(self, dim, heads, dropout=0.0):
        super().__init__()
        self.heads = heads
        self.dropout = dropout  # on the probabilities
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        B, T, D = x.shape
        H, Dh = self.heads, D // self.heads
        q, k, v = self.qkv(x).view(B, T, 3, H, Dh).permute(2, 0, 3, 1, 4)
        scores = (q @ k.transpose(-1, -2)) / math.sqrt(Dh)
        mask = torch.ones(T, T, dtype=torch.bool, device=x.device).triu(1)
        p = F.dropout(scores.masked_fill(mask, float("-inf")).softmax(-1), self.dropout, self.training)
        return self.proj((p @ v).transpose(1, 2).reshape(B, T, D))


def ac_weights(x, labels, experts, eps=1e-4, clip=10.0):
    """W [E, d] of docs/design.md: 1 / (MAD + eps) per cluster and feature, clipped
    at clip * mean(W), divided by its mean over the clusters per feature."""
    counts = torch.bincount(labels, minlength=experts).to(x.dtype).clamp_min(1).unsqueeze(1)
    mu = torch.zeros(experts, x.shape[1], dtype=x.dtype, device=x.device).index_add_(0, labels, x) / counts
    mad = torch.zeros_like(mu).index_add_(0, labels, (x - mu[labels]).abs()) / counts
    W = 1.0 / (mad + eps)
    W = torch.minimum(W, clip * W.mean())
    return W / W.mean(0, keepdim=True)


class Router(nn.Module):
    def __init__(self, dim, experts, k, ac):
        super().__init__()
        self.experts, self.k, self.ac = experts, k, ac
        self.gate = nn.Linear(dim, experts)

    def forward(self, x, prev_labels=None):
        if self.ac:
            with torch.no_grad():
                W = ac_weights(x, prev_labels, self.experts)
            logits = self.gate(x * W[prev_labels])
        else:
            logits = self.gate(x)
        top_logits, top_idx = logits.topk(self.k, dim=-1)
        scores = top_logits.softmax(-1)
        share = torch.bincount(top_idx.flatten(), minlength=self.experts).to(x.dtype) / top_idx.numel()
        balance = self.experts * (share * logits.softmax(-1).mean(0)).sum()
        return scores, top_idx, balance


class MoE(nn.Module):
    def __init__(self, dim, hidden, experts, k, ac=False):
        super().__init__()
        self.router = Router(dim, experts, k, ac)
        bi, bh = 1 / math.sqrt(dim), 1 / math.sqrt(hidden)
        self.w1 = nn.Parameter(torch.empty(experts, hidden, dim).uniform_(-bi, bi))
        self.b1 = nn.Parameter(torch.empty(experts, hidden).uniform_(-bi, bi))
        self.w2 = nn.Parameter(torch.empty(experts, dim, hidden).uniform_(-bh, bh))
        self.b2 = nn.Parameter(torch.empty(experts, dim).uniform_(-bh, bh))

    def forward(self, x, prev_labels=None):
        scores, top_idx, balance = self.router(x, prev_labels)
        k = top_idx.shape[1]
        flat = top_idx.flatten()
        order = torch.sort(flat, stable=True).indices
        token = order // k
        counts = torch.bincount(flat, minlength=self.w1.shape[0]).tolist()
        rows = x[token]
        outs, start = [], 0
        for e, c in enumerate(counts):
            if c:
                h = gelu(F.linear(rows[start:start + c], self.w1[e], self.b1[e]))
                outs.append(F.linear(h, self.w2[e], self.b2[e]))
                start += c
        ys = torch.cat(outs) * scores.flatten()[order].unsqueeze(1)
        y = torch.zeros_like(x).index_add(0, token, ys)
        return y, balance, top_idx[:, 0]


class LM(nn.Module):
    def __init__(self, arch, vocab, seq, dim, heads, hidden, experts, k):
        super().__init__()
        self.arch = arch
        self.tokens = nn.Embedding(vocab, dim)
        self.positions = nn.Parameter(torch.randn(seq, dim) * 0.02)
        self.norms = nn.ModuleList(nn.LayerNorm(dim) for _ in arch)
        self.layers = nn.ModuleList(
            Attention(dim, heads) if c == "s" else MoE(dim, hidden, experts, k, ac=c == "c") for c in arch)
        self.final_norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, vocab)

    def forward(self, ids, targets):
        B, T = ids.shape
        h = self.tokens(ids) + self.positions[:T]
        balance, labels = 0.0, None
        for c, norm, layer in zip(self.arch, self.norms, self.layers):
            if c == "s":
                h = h + layer(norm(h))
            else:
                y, bal, labels = layer(norm(h).reshape(B * T, -1), labels)
                h = h + y.view(B, T, -1)
                balance = balance + bal
        logits = self.head(self.final_norm(h))
        return F.cross_entropy(logits.view(B * T, -1), targets.view(-1)), balance


class Peak:
    """Peak memory of a section: the CUDA allocator's peak, or on the CPU the
    resident high-water mark above the size at the start (as bench_util.h)."""

    def __init__(self, device):
        self.device = device
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
            self.start = torch.cuda.memory_allocated(device)
        else:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
            self.start = self.status("VmRSS")

    @staticmethod
    def status(field):
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
        return 0

    def mib(self):
        if self.device.type == "cuda":
            return (torch.cuda.max_memory_allocated(self.device) - self.start) / 2**20
        return (self.status("VmHWM") - self.start) / 2**20


def time_runs(fn, warmup, reps, inner, device):
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for _ in range(warmup):
        fn()
    sync()
    times = []
    for _ in range(reps):
        a = time.perf_counter()
        for _ in range(inner):
            fn()
        sync()
        times.append((time.perf_counter() - a) * 1000 / inner)
    return times


def lm_step(a, router, device):
    """One training step of the byte LM (forward, loss + 0.01 balance, backward, Adam)."""
    arch = "sg" + ("sc" if router == "acmoe" else "sg") * (a.moe_layers - 1)
    model = LM(arch, 256, a.seq, a.dim, a.heads, a.hidden, a.experts, a.k).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    ids = torch.randint(0, 256, (a.batch, a.seq), device=device)
    targets = torch.randint(0, 256, (a.batch, a.seq), device=device)

    def step():
        opt.zero_grad(set_to_none=True)
        loss, balance = model(ids, targets)
        (loss + 0.01 * balance).backward()
        opt.step()

    return step


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("case", choices=["train_step", "ac_overhead", "moe_layer", "ac_router", "gemm", "attention"])
    for name, default in [("batch", 8), ("seq", 256), ("dim", 128), ("heads", 8), ("experts", 16), ("k", 2),
                          ("hidden", 128), ("moe-layers", 4), ("tokens", 2048), ("size", 512), ("threads", 2),
                          ("warmup", 3), ("reps", 7), ("inner", 1), ("dropout-pct", 0)]:
        p.add_argument("--" + name, type=int, default=default)
    p.add_argument("--router", choices=["smoe", "acmoe"], default="smoe")
    p.add_argument("--device", default="cpu")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.backends.cuda.matmul.allow_tf32 = False  # as moegrad's default (and PyTorch's since 1.12)
    device = torch.device(a.device)
    peak = Peak(device)
    torch.manual_seed(0)

    if a.case == "train_step":
        step = lm_step(a, a.router, device)
        name, items, unit = "train_step/" + a.router, a.batch * a.seq, "tokens/s"
    elif a.case == "ac_overhead":
        # the smoe and the acmoe step alternating in one process (as moegrad_bench)
        # the same seed: the same weights and data for both (AC adds no parameters)
        torch.manual_seed(0)
        smoe = lm_step(a, "smoe", device)
        torch.manual_seed(0)
        acmoe = lm_step(a, "acmoe", device)
        for _ in range(a.warmup):
            smoe(), acmoe()
        ts, ta = [], []
        for _ in range(a.reps):
            ts += time_runs(smoe, 0, 1, 1, device)
            ta += time_runs(acmoe, 0, 1, 1, device)
        ms, ma = sorted(ts)[len(ts) // 2], sorted(ta)[len(ta) // 2]
        print(json.dumps({"impl": "pytorch", "case": "ac_overhead", "smoe_ms": round(ms, 4), "acmoe_ms": round(ma, 4),
                          "overhead_pct": round(100 * (ma - ms) / ms, 2), "median_ms": round(ma, 4),
                          "per_s": a.batch * a.seq / (ma / 1000), "unit": "tokens/s",
                          "peak_mib": round(peak.mib(), 1)}), flush=True)
        return
    elif a.case in ("moe_layer", "ac_router"):
        x = torch.randn(a.tokens, a.dim, device=device, requires_grad=True)
        if a.case == "moe_layer":
            layer = MoE(a.dim, a.hidden, a.experts, a.k).to(device)

            def step():
                layer.zero_grad(set_to_none=True)
                x.grad = None
                y, balance, _ = layer(x)
                (y.sum() + 0.01 * balance).backward()
        else:
            router = Router(a.dim, a.experts, a.k, ac=True).to(device)
            prev_labels = torch.randn(a.tokens, a.experts, device=device).topk(a.k, -1).indices[:, 0]

            def step():
                router.zero_grad(set_to_none=True)
                x.grad = None
                scores, _, balance = router(x, prev_labels)
                (scores.sum() + 0.01 * balance).backward()

        name, items, unit = f"{a.case}/n={a.tokens}", a.tokens, "tokens/s"
    elif a.case == "gemm":
        A = torch.randn(a.size, a.size, device=device)
        B = torch.randn(a.size, a.size, device=device)

        def step():
            torch.matmul(A, B)

        name, items, unit = f"gemm/n={a.size}", 2.0 * a.size ** 3 / 1e9, "GFLOP/s"
    else:
        attn = Attention(a.dim, a.heads, a.dropout_pct / 100).to(device)
        x = torch.randn(a.batch, a.seq, a.dim, device=device, requires_grad=True)

        def step():
            attn.zero_grad(set_to_none=True)
            x.grad = None
            attn(x).sum().backward()

        name, items, unit = f"attention/B={a.batch},T={a.seq}", a.batch * a.seq, "tokens/s"
        if a.dropout_pct:
            name += f",dropout={a.dropout_pct}%"

    times = time_runs(step, a.warmup, a.reps, a.inner, device)
    median = sorted(times)[len(times) // 2]
    print(json.dumps({"impl": "pytorch", "case": name, "median_ms": round(median, 4),
                      "times_ms": [round(t, 4) for t in times], "per_s": items / (median / 1000), "unit": unit,
                      "peak_mib": round(peak.mib(), 1)}), flush=True)


if __name__ == "__main__":
    main()
