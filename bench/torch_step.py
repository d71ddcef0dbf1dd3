#!/usr/bin/env python3
"""The pma nn engine's models in plain PyTorch, for bench/train-vs-torch.ts.

One full training step (forward, backward, gradient clipping, AdamW) of a Llama
(embedding, RMSNorm, half-split RoPE, causal multi-head attention, SwiGLU MLP, final
norm, tied LM head) or Mixtral MoE (router softmax, top-k renormalised, experts computed
on their routed tokens with index_select / index_add_, load-balancing aux loss) model in
float32 on random tokens. Warm-up steps, then timed steps; prints one JSON line.

    python3 bench/torch_step.py '<json>'

with a JSON object of the model config (pma / Hugging Face field names) plus
"batch", "seq", "steps", "warmup" and "threads".
"""
import json
import math
import statistics
import sys
import time

import torch
import torch.nn.functional as F
from torch import nn

HAS_SDPA = hasattr(F, "scaled_dot_product_attention")


class RMSNorm(nn.Module):
    def __init__(self, dim, eps):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


def rope_tables(seq, head_dim, theta):
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))
    ang = torch.outer(torch.arange(seq, dtype=torch.float32), inv_freq)
    ang = torch.cat([ang, ang], dim=-1)
    return ang.cos(), ang.sin()


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat([-x[..., h:], x[..., :h]], dim=-1)


class Attention(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.h = c["num_attention_heads"]
        self.kv = c["num_key_value_heads"]
        self.d = c["head_dim"]
        hid = c["hidden_size"]
        self.q_proj = nn.Linear(hid, self.h * self.d, bias=False)
        self.k_proj = nn.Linear(hid, self.kv * self.d, bias=False)
        self.v_proj = nn.Linear(hid, self.kv * self.d, bias=False)
        self.o_proj = nn.Linear(self.h * self.d, hid, bias=False)

    def forward(self, x, cos, sin, mask):
        B, S, _ = x.shape
        q = self.q_proj(x).view(B, S, self.h, self.d).transpose(1, 2)
        k = self.k_proj(x).view(B, S, self.kv, self.d).transpose(1, 2)
        v = self.v_proj(x).view(B, S, self.kv, self.d).transpose(1, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        if self.kv != self.h:
            rep = self.h // self.kv
            k = k.repeat_interleave(rep, dim=1)
            v = v.repeat_interleave(rep, dim=1)
        if HAS_SDPA:
            o = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            s = (q @ k.transpose(-1, -2)) * (1.0 / math.sqrt(self.d))
            s = s.masked_fill(mask, float("-inf"))
            o = torch.softmax(s, dim=-1) @ v
        return self.o_proj(o.transpose(1, 2).reshape(B, S, self.h * self.d))


class Mlp(nn.Module):
    def __init__(self, hid, inter):
        super().__init__()
        self.gate_proj = nn.Linear(hid, inter, bias=False)
        self.up_proj = nn.Linear(hid, inter, bias=False)
        self.down_proj = nn.Linear(inter, hid, bias=False)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class Moe(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.E = c["num_local_experts"]
        self.k = c["num_experts_per_tok"]
        self.gate = nn.Linear(c["hidden_size"], self.E, bias=False)
        self.experts = nn.ModuleList([Mlp(c["hidden_size"], c["intermediate_size"]) for _ in range(self.E)])

    def forward(self, x):
        shape = x.shape
        x = x.reshape(-1, shape[-1])
        probs = torch.softmax(self.gate(x), dim=-1)
        topw, topi = probs.topk(self.k, dim=-1)
        topw = topw / topw.sum(dim=-1, keepdim=True)
        out = torch.zeros_like(x)
        for e in range(self.E):
            tok, slot = torch.where(topi == e)
            if tok.numel() == 0:
                continue
            y = self.experts[e](x.index_select(0, tok)) * topw[tok, slot].unsqueeze(-1)
            out = out.index_add(0, tok, y)
        return out.reshape(shape), probs, topi


class Block(nn.Module):
    def __init__(self, c):
        super().__init__()
        eps = c["rms_norm_eps"]
        self.input_layernorm = RMSNorm(c["hidden_size"], eps)
        self.self_attn = Attention(c)
        self.post_attention_layernorm = RMSNorm(c["hidden_size"], eps)
        self.moe = c["num_local_experts"] > 0
        self.mlp = Moe(c) if self.moe else Mlp(c["hidden_size"], c["intermediate_size"])

    def forward(self, x, cos, sin, mask, router):
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, mask)
        h = self.post_attention_layernorm(x)
        if self.moe:
            y, probs, topi = self.mlp(h)
            router.append((probs, topi))
        else:
            y = self.mlp(h)
        return x + y


class Model(nn.Module):
    def __init__(self, c, seq):
        super().__init__()
        self.c = c
        self.embed_tokens = nn.Embedding(c["vocab_size"], c["hidden_size"])
        self.layers = nn.ModuleList([Block(c) for _ in range(c["num_hidden_layers"])])
        self.norm = RMSNorm(c["hidden_size"], c["rms_norm_eps"])
        if c["tie_word_embeddings"]:
            self.lm_head = None
        else:
            self.lm_head = nn.Linear(c["hidden_size"], c["vocab_size"], bias=False)
        cos, sin = rope_tables(seq, c["head_dim"], c["rope_theta"])
        self.register_buffer("cos", cos, persistent=False)
        self.register_buffer("sin", sin, persistent=False)
        self.register_buffer("mask", torch.triu(torch.ones(seq, seq, dtype=torch.bool), diagonal=1), persistent=False)
        std = c["initializer_range"]
        for p in self.parameters():
            if p.dim() >= 2:
                nn.init.normal_(p, std=std)

    def forward(self, tokens, targets):
        router = []
        x = self.embed_tokens(tokens)
        for layer in self.layers:
            x = layer(x, self.cos, self.sin, self.mask, router)
        x = self.norm(x)
        w = self.embed_tokens.weight if self.lm_head is None else self.lm_head.weight
        logits = x @ w.t()
        loss = F.cross_entropy(logits.view(-1, logits.shape[-1]), targets.view(-1))
        coef = self.c.get("router_aux_loss_coef", 0.0)
        if router and coef > 0:
            # Hugging Face's load_balancing_loss_func over all layers' routing.
            E = self.c["num_local_experts"]
            probs = torch.cat([p for p, _ in router], dim=0)
            topi = torch.cat([t for _, t in router], dim=0)
            tokens_per_expert = F.one_hot(topi, E).float().mean(dim=0)
            loss = loss + coef * E * (tokens_per_expert * probs.mean(dim=0).unsqueeze(0)).sum()
        return loss


def main():
    a = json.loads(sys.argv[1])
    torch.set_num_threads(int(a.get("threads", 2)))
    torch.manual_seed(0)
    B, S = a["batch"], a["seq"]
    model = Model(a, S)
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
        lr=1e-3, betas=(0.9, 0.95), eps=1e-8,
    )
    g = torch.Generator().manual_seed(7)
    tokens = torch.randint(0, a["vocab_size"], (B, S), generator=g)
    targets = torch.randint(0, a["vocab_size"], (B, S), generator=g)

    def step():
        opt.zero_grad(set_to_none=True)
        loss = model(tokens, targets)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        return loss.item()

    for _ in range(int(a.get("warmup", 1))):
        step()
    wall, cpu = [], []
    loss = float("nan")
    for _ in range(int(a.get("steps", 5))):
        t0, c0 = time.perf_counter(), time.process_time()
        loss = step()
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    step_s = statistics.median(wall)
    cpu_s = statistics.median(cpu)
    n = B * S
    print(json.dumps({
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "attention": "scaled_dot_product_attention(is_causal=True)" if HAS_SDPA else "explicit softmax (masked_fill, no SDPA in this torch)",
        "params": sum(p.numel() for p in model.parameters()),
        "tokens": n,
        "steps": len(wall),
        "step_ms": step_s * 1000,
        "tokens_per_s": n / step_s,
        "cpu_ms": cpu_s * 1000,
        "tokens_per_cpu_s": n / cpu_s if cpu_s > 0 else None,
        "step_ms_all": [round(w * 1000, 1) for w in wall],
        "loss": loss,
    }))


if __name__ == "__main__":
    main()
