"""Independent PyTorch reference of muongpt's Muon and dualizers (DESIGN.md section 3).

Written from the design's formulas, not from the C++ sources, so that the parity fixtures
check the C++ optimizer against something that did not share its bugs. AdamW is not
re-implemented: the fixtures use torch.optim.AdamW itself.

Muon, for a matrix W with gradient G, at 0-based step t with schedule multiplier s:

    mu  = momentum_start + (momentum - momentum_start) * min(t / momentum_warmup, 1)
    ema:     buf = mu*buf + (1-mu)*G;   u = (1-mu)*G + mu*buf  if nesterov else buf
    classic: buf = mu*buf + G;          u = G + mu*buf         if nesterov else buf
    O   = dualize(u)
    W   = W*(1 - lr*s*wd) - lr*s*scale(W)*O

Newton-Schulz runs in float32 (as the design asks); the exact dualizers (polar, Schatten-p)
use a float64 SVD, which is a different algorithm from the C++ code's Gram eigensolver.
"""

from __future__ import annotations

import math

import torch

JORDAN = (3.4445, -4.7750, 2.0315)
CUBIC = (1.5, -0.5, 0.0)
# Polar Express (Amsel, Persson, Musco, Gower 2025), degree 5, lower bound 1e-3. The first
# seven triples get the safety factor 1.01 (a/1.01, b/1.01^3, c/1.01^5) and the input is
# normalised by 1.01*||X||_F; the last triple repeats for any further steps.
POLAR_EXPRESS_RAW = [
    (8.28721201814563, -23.595886519098837, 17.300387312530933),
    (4.107059111542203, -2.9478499167379106, 0.5448431082926601),
    (3.9486908534822946, -2.908902115962949, 0.5518191394370137),
    (3.3184196573706015, -2.488488024314874, 0.51004894012372),
    (2.300652019954817, -1.6689039845747493, 0.4188073119525673),
    (1.891301407787398, -1.2679958271945868, 0.37680408948524835),
    (1.8750014808534479, -1.2500016453999487, 0.3750001645474248),
    (1.875, -1.25, 0.375),
]
PE_SAFETY = 1.01


def ns_schedule(coeffs: str, steps: int) -> tuple[list[tuple[float, float, float]], float]:
    """The (a, b, c) of every step and the factor on ||X||_F in the normalisation."""
    if coeffs == "jordan":
        return [JORDAN] * steps, 1.0
    if coeffs == "cubic":
        return [CUBIC] * steps, 1.0
    if coeffs == "polar-express":
        out = []
        for i in range(steps):
            if i >= len(POLAR_EXPRESS_RAW) - 1:
                out.append(POLAR_EXPRESS_RAW[-1])
            else:
                a, b, c = POLAR_EXPRESS_RAW[i]
                out.append((a / PE_SAFETY, b / PE_SAFETY**3, c / PE_SAFETY**5))
        return out, PE_SAFETY
    raise ValueError(coeffs)


def newton_schulz(G: torch.Tensor, coeffs: str = "jordan", steps: int = 5, eps: float = 1e-7):
    """Float32 Newton-Schulz: X = G/(c*||G||_F + eps) (transposed so rows <= cols), then per
    step A = X X^T, X = a X + (b A + c A^2) X."""
    X = G.to(torch.float32)
    tall = X.shape[0] > X.shape[1]
    if tall:
        X = X.T
    triples, factor = ns_schedule(coeffs, steps)
    X = X / (X.norm() * factor + eps)
    for a, b, c in triples:
        A = X @ X.T
        B = b * A + c * (A @ A)
        X = a * X + B @ X
    return (X.T if tall else X).contiguous()


def newton_schulz_bf16(G: torch.Tensor, coeffs: str = "jordan", steps: int = 5,
                       eps: float = 1e-7, dtype: torch.dtype = torch.bfloat16) -> torch.Tensor:
    """Newton-Schulz the way modded-nanogpt runs it on the GPU: X in bfloat16 throughout (the
    matmuls accumulate in float32 and round to bfloat16), the same schedule, transposition and
    normalisation as `newton_schulz` above; only the precision differs. Not the oracle: the
    fixtures and the CPU baseline use the float32 `newton_schulz`.

    G is one matrix [m, n] or a stack [k, m, n] of same-shape matrices (each normalised by its
    own Frobenius norm, so a stack gives what k separate calls give). Each step is two batched
    GEMMs with the scalars in the GEMM epilogue (baddbmm):
    A = X X^T, B = b A + c A A, X = a X + B X. Returns `dtype` (bfloat16), G's shape; a tall
    G comes back as a transposed view. `dtype` other than bfloat16 is for tests."""
    X = G.to(dtype)
    single = X.ndim == 2
    if single:
        X = X.unsqueeze(0)
    tall = X.size(-2) > X.size(-1)
    if tall:
        X = X.mT
    triples, factor = ns_schedule(coeffs, steps)
    X = X / (X.norm(dim=(-2, -1), keepdim=True) * factor + eps)
    for a, b, c in triples:
        A = X @ X.mT
        B = torch.baddbmm(A, A, A, beta=b, alpha=c)
        X = torch.baddbmm(X, B, X, beta=a, alpha=1.0)
    if tall:
        X = X.mT
    return X[0] if single else X


def schatten(G: torch.Tensor, p: float) -> torch.Tensor:
    """argmax_{||T||_{S_p} = 1} <G, T> = U diag(s^(q-1)) / ||G||_{S_q}^(q-1) V^T, 1/p + 1/q = 1,
    from a float64 SVD."""
    U, S, Vh = torch.linalg.svd(G.to(torch.float64), full_matrices=False)
    if S[0] == 0:
        return torch.zeros_like(G, dtype=torch.float32)
    if math.isinf(p):
        h = (S > S[0] * 1e-7 * math.sqrt(len(S))).to(torch.float64)  # polar: every s -> 1
    elif p == 1.0:
        top = S >= S[0] * (1 - 1e-12)
        h = top.to(torch.float64) / top.sum()
    else:
        q = p / (p - 1)
        h = S ** (q - 1) / torch.linalg.vector_norm(S, ord=q) ** (q - 1)
    return ((U * h) @ Vh).to(torch.float32)


def dualize(spec: str, G: torch.Tensor) -> torch.Tensor:
    """spec: ns:<coeffs>:<steps> | polar | schatten-p:<p> | sign | frobenius"""
    if spec.startswith("ns:"):
        _, coeffs, steps = spec.split(":")
        return newton_schulz(G, coeffs, int(steps))
    if spec == "polar":
        return schatten(G, math.inf)
    if spec.startswith("schatten-p:"):
        return schatten(G, float(spec.split(":")[1]))
    if spec == "sign":
        return torch.sign(G).to(torch.float32)
    if spec == "frobenius":
        n = G.to(torch.float64).norm()
        return (G.to(torch.float64) / n).to(torch.float32) if n > 0 else torch.zeros_like(G)
    raise ValueError(spec)


def shape_scale(rule: str, rows: int, cols: int) -> float:
    if rule == "keller":
        return math.sqrt(max(1.0, rows / cols))
    if rule == "spectral":
        return math.sqrt(rows / cols)
    if rule == "moonlight":
        return 0.2 * math.sqrt(max(rows, cols))
    if rule == "none":
        return 1.0
    raise ValueError(rule)


class Muon:
    """Muon over float32 matrices; `params` is a list of dicts with keys
    tensor, lr, scale, wd, dualizer."""

    def __init__(self, params, momentum=0.95, momentum_start=0.85, momentum_warmup=300,
                 kind="ema", nesterov=True):
        self.params = params
        self.momentum, self.momentum_start = momentum, momentum_start
        self.momentum_warmup, self.kind, self.nesterov = momentum_warmup, kind, nesterov
        for p in params:
            p["buf"] = torch.zeros_like(p["tensor"])

    def mu(self, step: int) -> float:
        if self.momentum_warmup <= 0:
            return self.momentum
        frac = min(1.0, step / self.momentum_warmup)
        return (1 - frac) * self.momentum_start + frac * self.momentum

    @torch.no_grad()
    def step(self, step: int, lr_scale: float):
        mu = self.mu(step)
        for p in self.params:
            W, G, buf = p["tensor"], p["tensor"].grad, p["buf"]
            if self.kind == "ema":
                buf.mul_(mu).add_(G, alpha=1 - mu)
                u = G.mul(1 - mu).add(buf, alpha=mu) if self.nesterov else buf
            else:
                buf.mul_(mu).add_(G)
                u = G.add(buf, alpha=mu) if self.nesterov else buf
            O = dualize(p["dualizer"], u)
            lr = p["lr"] * lr_scale
            W.mul_(1 - lr * p["wd"])
            W.add_(O, alpha=-lr * p["scale"])
