"""Independent PyTorch reference of the muongpt "base" GPT (DESIGN.md section 2).

Written from the design's formulas only; it is the oracle the C++ tests are checked
against, so it favours plain, readable code over speed. It computes in whatever dtype
its parameters have (the fixtures use float64).

The default path is the oracle and stays plain. Two opt-in switches exist for the PyTorch
speed baseline (tools/reference/train_torch.py on the GPU); neither is used by the fixtures:
`GPT(cfg, attention="sdpa")` computes attention with `F.scaled_dot_product_attention(...,
is_causal=True, scale=cfg.scale)` (flash attention on the GPU) instead of the explicit
masked softmax, and `GPT.cache_rope(T)` precomputes the RoPE tables once (as buffers that
follow `.to(device)`) instead of rebuilding them on the CPU in every forward.

Parameter names and their order are part of the interface (see `param_names`).
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass, fields

import torch
import torch.nn as nn
import torch.nn.functional as F

INV_SQRT_D_HEAD = "1/sqrt(d_head)"
MLP_KINDS = ("relu2", "swiglu")


@dataclass
class Config:
    vocab_size: int = 50257
    vocab_multiple: int = 128
    n_layer: int = 12
    d_model: int = 768
    d_head: int = 128
    mlp_ratio: int = 4
    mlp: str = "relu2"  # "relu2" or "swiglu" (gated: adds mlp.w3)
    d_mlp: int = 0  # the MLP hidden width; 0 = mlp_ratio * d_model
    seq_len: int = 1024
    norm_eps: float = 1e-6
    norm_gains: bool = False
    attn_scale: float | str = 0.12  # a number or "1/sqrt(d_head)"
    rope_base: float = 1024.0
    softcap: float = 15.0  # 0 = off

    def __post_init__(self):
        for f in fields(self):
            v = getattr(self, f.name)
            if f.name == "attn_scale":
                ok = v == INV_SQRT_D_HEAD or (isinstance(v, (int, float)) and not isinstance(v, bool))
                if not ok:
                    raise ValueError(f"attn_scale must be a number or {INV_SQRT_D_HEAD!r}, got {v!r}")
                if not isinstance(v, str):
                    self.attn_scale = float(v)
            elif f.type == "int":
                if not isinstance(v, int) or isinstance(v, bool):
                    raise ValueError(f"{f.name} must be an integer, got {v!r}")
            elif f.type == "float":
                if not isinstance(v, (int, float)) or isinstance(v, bool):
                    raise ValueError(f"{f.name} must be a number, got {v!r}")
                setattr(self, f.name, float(v))
            elif f.type == "bool" and not isinstance(v, bool):
                raise ValueError(f"{f.name} must be a boolean, got {v!r}")
            elif f.type == "str" and not isinstance(v, str):
                raise ValueError(f"{f.name} must be a string, got {v!r}")
        if self.d_model % self.d_head != 0:
            raise ValueError("d_model must be a multiple of d_head")
        if self.d_head % 4 != 0:
            raise ValueError("d_head must be a multiple of 4 (half-truncated RoPE)")
        if self.mlp not in MLP_KINDS:
            raise ValueError(f"mlp must be one of {MLP_KINDS}, got {self.mlp!r}")
        if self.d_mlp < 0:
            raise ValueError(f"d_mlp must be >= 0 (0 = mlp_ratio * d_model), got {self.d_mlp}")

    @classmethod
    def from_toml(cls, text: str) -> "Config":
        """Parse the [model] section of a TOML document; unknown keys are an error."""
        section = tomllib.loads(text).get("model", {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(section) - known)
        if unknown:
            raise ValueError(f"unknown [model] keys: {unknown}")
        return cls(**section)

    def to_toml(self) -> str:
        """The [model] section with every key spelled out, one `key = value` per line."""
        lines = ["[model]"]
        for f in fields(self):
            lines.append(f"{f.name} = {_toml_value(getattr(self, f.name))}")
        return "\n".join(lines) + "\n"

    @property
    def vocab_padded(self) -> int:  # Vp
        m = self.vocab_multiple
        return (self.vocab_size + m - 1) // m * m

    @property
    def mlp_width(self) -> int:  # F
        return self.d_mlp if self.d_mlp > 0 else self.mlp_ratio * self.d_model

    @property
    def n_head(self) -> int:
        return self.d_model // self.d_head

    @property
    def scale(self) -> float:
        if self.attn_scale == INV_SQRT_D_HEAD:
            return 1.0 / math.sqrt(self.d_head)
        return float(self.attn_scale)


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        s = repr(v)  # shortest round-tripping form
        mant, _, exp = s.partition("e")
        if "." not in mant:
            mant += ".0"
        return mant + (f"e{int(exp)}" if exp else "")
    return '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"'


def param_names(cfg: Config) -> list[str]:
    """Every parameter name, in the interface order."""
    names = ["embed.weight"]
    for i in range(cfg.n_layer):
        p = f"blocks.{i}."
        if cfg.norm_gains:
            names.append(p + "attn_norm.weight")
        names += [p + "attn.wq", p + "attn.wk", p + "attn.wv", p + "attn.wo"]
        if cfg.norm_gains:
            names.append(p + "mlp_norm.weight")
        names += [p + "mlp.w1"] + ([p + "mlp.w3"] if cfg.mlp == "swiglu" else []) + [p + "mlp.w2"]
    if cfg.norm_gains:
        names.append("final_norm.weight")
    names.append("head.weight")
    return names


def rmsnorm(x, eps, gain=None):
    y = x / torch.sqrt(x.pow(2).mean(dim=-1, keepdim=True) + eps)
    return y * gain if gain is not None else y


def rope_cos_sin(T: int, d_head: int, base: float, dtype):
    """Half-truncated RoPE: dh/4 real frequencies then dh/4 zero frequencies."""
    quarter = d_head // 4
    freq = (1.0 / base) ** torch.linspace(0, 1, quarter, dtype=torch.float64)
    freq = torch.cat([freq, torch.zeros(d_head // 2 - quarter, dtype=torch.float64)])
    angle = torch.arange(T, dtype=torch.float64)[:, None] * freq[None, :]  # [T, dh/2]
    return angle.cos().to(dtype), angle.sin().to(dtype)


def rope(x, cos, sin):
    """x: [B, T, H, dh]; rotates the pairs (x[j], x[j + dh/2])."""
    half = x.shape[-1] // 2
    x1, x2 = x[..., :half], x[..., half:]
    c, s = cos[None, :, None, :], sin[None, :, None, :]
    return torch.cat([x1 * c + x2 * s, -x1 * s + x2 * c], dim=-1)


def _param(*shape, dtype):
    return nn.Parameter(torch.zeros(*shape, dtype=dtype))


class RMSNorm(nn.Module):
    def __init__(self, cfg: Config, dtype):
        super().__init__()
        self.eps = cfg.norm_eps
        self.weight = _param(cfg.d_model, dtype=dtype) if cfg.norm_gains else None

    def forward(self, x):
        return rmsnorm(x, self.eps, self.weight)


ATTENTION_IMPLS = ("explicit", "sdpa")


class Attention(nn.Module):
    def __init__(self, cfg: Config, dtype, attention: str = "explicit"):
        super().__init__()
        if attention not in ATTENTION_IMPLS:
            raise ValueError(f"attention must be one of {ATTENTION_IMPLS}, got {attention!r}")
        self.cfg = cfg
        self.attention = attention
        d = cfg.d_model
        self.wq, self.wk = _param(d, d, dtype=dtype), _param(d, d, dtype=dtype)
        self.wv, self.wo = _param(d, d, dtype=dtype), _param(d, d, dtype=dtype)

    def forward(self, a, cos, sin):
        cfg = self.cfg
        B, T, d = a.shape
        H, dh = cfg.n_head, cfg.d_head
        q = (a @ self.wq.T).view(B, T, H, dh)
        k = (a @ self.wk.T).view(B, T, H, dh)
        v = (a @ self.wv.T).view(B, T, H, dh)
        q, k = rmsnorm(q, cfg.norm_eps), rmsnorm(k, cfg.norm_eps)  # QK-norm, no gain
        q, k = rope(q, cos, sin), rope(k, cos, sin)
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)  # [B, H, T, dh]
        if self.attention == "sdpa":  # the same causal softmax(scale * q k^T) v, fused
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=cfg.scale)
        else:
            att = cfg.scale * (q @ k.transpose(-2, -1))  # [B, H, T, T]
            causal = torch.ones(T, T, dtype=torch.bool, device=att.device).tril()  # s <= t
            att = att.masked_fill(~causal, float("-inf")).softmax(dim=-1)
            y = att @ v
        y = y.transpose(1, 2).reshape(B, T, d)  # heads concatenated: h*dh + j
        return y @ self.wo.T


class MLP(nn.Module):
    """relu2:  relu(m w1^T)^2 w2^T
    swiglu: (silu(m w1^T) * (m w3^T)) w2^T, silu(h) = h * sigmoid(h): w1 the activated
    branch, w3 the linear one (Llama's names), w2 the output."""

    def __init__(self, cfg: Config, dtype):
        super().__init__()
        d, h = cfg.d_model, cfg.mlp_width
        self.gated = cfg.mlp == "swiglu"
        # attribute order == parameter order: w1, (w3,) w2
        self.w1 = _param(h, d, dtype=dtype)
        if self.gated:
            self.w3 = _param(h, d, dtype=dtype)
        self.w2 = _param(d, h, dtype=dtype)

    def forward(self, m):
        h = m @ self.w1.T
        if self.gated:
            b = h * torch.sigmoid(h) * (m @ self.w3.T)
        else:
            b = F.relu(h).square()
        return b @ self.w2.T


class Block(nn.Module):
    def __init__(self, cfg: Config, dtype, attention: str = "explicit"):
        super().__init__()
        # attribute order == parameter order
        self.attn_norm = RMSNorm(cfg, dtype)
        self.attn = Attention(cfg, dtype, attention)
        self.mlp_norm = RMSNorm(cfg, dtype)
        self.mlp = MLP(cfg, dtype)

    def forward(self, x, cos, sin):
        x = x + self.attn(self.attn_norm(x), cos, sin)
        return x + self.mlp(self.mlp_norm(x))


class GPT(nn.Module):
    def __init__(self, cfg: Config, dtype=torch.float64, attention: str = "explicit"):
        """attention: "explicit" (matmul, causal mask, softmax: the oracle) or "sdpa"
        (F.scaled_dot_product_attention with is_causal=True: the GPU speed baseline)."""
        super().__init__()
        self.cfg = cfg
        Vp, d = cfg.vocab_padded, cfg.d_model
        self.embed = nn.Module()
        self.embed.weight = _param(Vp, d, dtype=dtype)
        self.blocks = nn.ModuleList(Block(cfg, dtype, attention) for _ in range(cfg.n_layer))
        self.final_norm = RMSNorm(cfg, dtype)
        self.head = nn.Module()
        self.head.weight = _param(Vp, d, dtype=dtype)
        # RoPE tables from cache_rope(); None (the default): rebuilt in every forward
        self.register_buffer("rope_cos", None, persistent=False)
        self.register_buffer("rope_sin", None, persistent=False)
        assert [n for n, _ in self.named_parameters()] == param_names(cfg)

    @torch.no_grad()
    def cache_rope(self, T: int):
        """Precompute the RoPE tables for sequences up to T (the same values forward builds),
        on the parameters' device and in their dtype; `.to(device)` moves them along. Used by
        the GPU baseline, where rebuilding them on the CPU would be a host-to-device copy in
        every forward."""
        w = self.embed.weight
        cos, sin = rope_cos_sin(T, self.cfg.d_head, self.cfg.rope_base, w.dtype)
        self.rope_cos, self.rope_sin = cos.to(w.device), sin.to(w.device)

    @torch.no_grad()
    def reset_parameters(self, generator=None):
        """The design's default init (wo, w2 and head start at zero, gains at one)."""
        d = self.cfg.d_model
        bound = math.sqrt(3) * 0.5 / math.sqrt(d)
        for name, p in self.named_parameters():
            if name == "embed.weight":
                p.normal_(0.0, 1.0, generator=generator)
            elif name.endswith(("attn.wq", "attn.wk", "attn.wv", "mlp.w1", "mlp.w3")):
                p.uniform_(-bound, bound, generator=generator)
            elif name.endswith("norm.weight"):
                p.fill_(1.0)
            else:  # attn.wo, mlp.w2, head.weight
                p.zero_()

    def forward(self, idx, targets=None):
        cfg = self.cfg
        B, T = idx.shape
        assert T <= cfg.seq_len, f"sequence length {T} > seq_len {cfg.seq_len}"
        if self.rope_cos is not None and self.rope_cos.shape[0] >= T:
            cos, sin = self.rope_cos[:T], self.rope_sin[:T]
        else:  # built on the CPU; .to() is a no-op there
            cos, sin = rope_cos_sin(T, cfg.d_head, cfg.rope_base, self.embed.weight.dtype)
            cos, sin = cos.to(idx.device), sin.to(idx.device)
        x = rmsnorm(self.embed.weight[idx], cfg.norm_eps)  # never a gain here
        for block in self.blocks:
            x = block(x, cos, sin)
        f = self.final_norm(x)
        z = f @ self.head.weight[: cfg.vocab_size].T  # padded vocab rows never used
        if cfg.softcap > 0:
            z = cfg.softcap * torch.tanh(z / cfg.softcap)
        loss = None
        if targets is not None:
            loss = F.cross_entropy(z.reshape(-1, cfg.vocab_size), targets.reshape(-1).long())
        return z, loss
