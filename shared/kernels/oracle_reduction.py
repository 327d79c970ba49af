"""The oracle reduction as one streaming kernel, the shape of attention.

Inputs: query (B, D) = alpha * u_t in the DCT basis, keys (n, D) = the
training images in that basis, key_sq (n,) = |alpha f_j|^2, values (n, Dv) =
the training images, inv_var = 1 / sigma_t^2. Scores

    s_bj = (query_b . keys_j - key_sq_j / 2) * inv_var

Outputs (float64, like the torch reference `oracle_reduction_reference`, the
oracle's streaming loop): the posterior mean sum_j softmax_j(s_b) values_j (B, Dv), lse_b =
logsumexp_j s_bj (B,) and the posterior entropy -sum_j w_bj ln w_bj (B,).

Each program owns BLOCK_B queries, BLOCK_DV output columns and one split of
the training set; it streams its split in BLOCK_N tiles: a matrix product for
the scores (looping over D), a running max, the running sums l = sum e^{s-m}
and t = sum e^{s-m} (s - m) (relative to the running max, so the entropy
ln l - t / l never cancels), and a second matrix product for the weighted sum
of values. B x n is never materialised: memory is O(S (B Dv + 3 B)) for S
splits, S a function of n only, and the splits are merged in a fixed order
in float64 (no atomics; `_combine_kernel`, one pass over the partials).
A second variant, `oracle_chunked.py` (config CHUNKED = 1), computes each
score tile once and runs the two products as separate tiled kernels per chunk
of the training set.

Dtypes on a GPU: the dispatch (`dispatch.oracle_uses_triton`) runs this kernel
for bfloat16/float16 inputs only. Float32 inputs take the torch reference
(cuBLAS float32 products) unless SCALESPACE_KERNELS=triton: full float32
("ieee") dots have no tensor-core path in Triton and run far slower
(bench/README.md), and TF32 products (10-bit mantissas) would break the
float32 bound below. For speed choose bfloat16
(OracleDenoiser(dtype=torch.bfloat16); a sample job's `oracle_dtype`). Inputs are float32, bfloat16 or float16; products
accumulate in float32 (bfloat16 tensor cores on the GPU, full float32
"ieee" products for float32 inputs; the interpreter, whose bf16 products are
unreliable, casts bf16 operands to float32, which is exact); the weights are
rounded to the values' dtype before the second product, as the reference does.

FLOPs: 2 B n D (scores) x ceil(Dv / BLOCK_DV) (each column block recomputes
its scores) + 2 B n Dv; useful FLOPs 2 B n (D + Dv). Bytes: keys and values
once per row block (from L2 mostly), queries once per tile.

Error bound (`error_bound`): with u = 2^-24, gamma_D = D u / (1 - D u), u_q
the unit roundoff of the input dtype when the reference keeps its scores in
it (2^-9 for bfloat16, 0 for float32: the reference rounds the product, the
shift, the scaling and s - m, six roundings at most) and A_b = max_j (sum_d
|q_bd k_jd| + |key_sq_j|), every score differs from the reference's by at most

    delta_b = inv_var (2 gamma_D + 4 u + 6 u_q) A_b,

so each weight by a factor within e^{+-2 delta_b}; with eps_b = e^{2 delta_b} - 1,
gamma_n = (n + 64) u and u_v the values' unit roundoff:

    |mean - ref| <= (eps_b + 2 u_v + gamma_n) max|v|,   |lse - ref| <= delta_b + gamma_n,
    |entropy - ref| <= 2 delta_b + eps_b H_b + gamma_n (1 + 2 H_b).
"""

from __future__ import annotations

import math

import torch

from scalespace.kernels._triton import INTERPRETED, alloc, launch_options, next_pow2, tl, triton
from scalespace.kernels.oracle_chunked import partials_chunked

U32 = 2.0**-24
SPLIT_SIZE = 4096  # training images per split: S = ceil(n / SPLIT_SIZE), independent of the batch


def oracle_reduction_reference(
    query: torch.Tensor, keys: torch.Tensor, key_sq: torch.Tensor, values: torch.Tensor, inv_var: float, chunk: int = 4096
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The torch reference: the oracle reduction streamed over the training set in chunks.

    query (B, D), keys (n, D), key_sq (n,) = |A f_j|^2, values (n, Dv).
    Scores s_bj = (query_b . keys_j - key_sq_j / 2) * inv_var.
    Returns (weighted mean of values (B, Dv) float64, logsumexp_j s_bj (B,),
    entropy of the softmax (B,)), accumulators in float64.

    Scores and weights stay in the matrix product's dtype (their error is set by
    the product); the running sums across chunks are float64. A chunk's scores,
    weights and the weights' float64 copy live in three (B, chunk) buffers
    allocated once per call and written in place (the products with `out=`,
    the shift, scaling and exponential in place), so the chunk loop allocates
    only O(B) and O(B Dv) tensors. Every value
    is rounded exactly as in the plain expression form (`(query @ k.T -
    key_sq / 2) * inv_var`, `exp(s - m)`, `p.sum(1, dtype=float64)`, `(p *
    s).sum(1, dtype=float64)`), so the results are the same bits. A row's
    results depend on its own query only: every pass is elementwise or a row
    reduction, and the batch enters the products only as their row count,
    which the samplers pad to a multiple of 8 (scalespace.sampling.pipeline).
    Memory: O(B D + B chunk + chunk D) (`dispatch.oracle_default_chunk`).
    """
    b, dv = query.shape[0], values.shape[1]
    n = keys.shape[0]
    dev = query.device
    f64 = torch.float64
    m = torch.full((b,), -math.inf, dtype=f64, device=dev)
    l = torch.zeros(b, dtype=f64, device=dev)
    ls = torch.zeros(b, dtype=f64, device=dev)  # sum e^{s-m} s
    acc = torch.zeros(b, dv, dtype=f64, device=dev)
    half_sq = 0.5 * key_sq  # elementwise, the same bits as halving each chunk's slice
    sdtype = torch.promote_types(torch.promote_types(query.dtype, keys.dtype), half_sq.dtype)
    in_place = sdtype == torch.promote_types(query.dtype, keys.dtype)
    width = min(chunk, n)
    # flat buffers, allocated once: the last, narrower chunk takes a contiguous prefix of each
    s_buf = torch.empty(b * width, dtype=sdtype, device=dev)
    p_buf = torch.empty(b * width, dtype=sdtype, device=dev)
    p64_buf = torch.empty(b * width, dtype=f64, device=dev)
    pv = pv64 = None
    for start in range(0, n, chunk):
        w = min(chunk, n - start)
        k = keys[start : start + w]
        if in_place:
            s = s_buf[: b * w].view(b, w)
            torch.mm(query, k.T, out=s)
            s.sub_(half_sq[start : start + w]).mul_(inv_var)
        else:
            s = (query @ k.T - half_sq[start : start + w]) * inv_var
        m_new = torch.maximum(m, s.amax(dim=1).to(f64))
        scale = torch.exp(m - m_new)
        p = p_buf[: b * w].view(b, w)
        torch.sub(s, m_new[:, None].to(s.dtype), out=p)
        p.exp_()
        # float64 row sums of p and of p s (each product rounded in the scores' dtype, then
        # widened exactly): the same bits as p.sum(1, dtype=float64) and (p * s).sum(1, dtype=float64)
        p64 = p64_buf[: b * w].view(b, w)
        l = l * scale + p64.copy_(p).sum(1)
        ls = ls * scale + torch.mul(p, s, out=p64).sum(1)
        pw = p.to(values.dtype)
        if pv is None:
            pv = torch.mm(pw, values[start : start + w])
            pv64 = torch.empty(pv.shape, dtype=f64, device=dev)
        else:
            torch.mm(pw, values[start : start + w], out=pv)
        acc.mul_(scale[:, None]).add_(pv64.copy_(pv))
        m = m_new
    lse = m + torch.log(l)
    entropy = lse - ls / l
    return acc / l[:, None], lse, entropy.clamp_min(0.0)


def _unit_roundoff(dtype: torch.dtype) -> float:
    return {torch.bfloat16: 2.0**-9, torch.float16: 2.0**-11}.get(dtype, U32)


def error_bound(
    query: torch.Tensor, keys: torch.Tensor, key_sq: torch.Tensor, values: torch.Tensor, inv_var: float,
    ref_entropy: torch.Tensor, chunk: int = 4096,
) -> dict[str, torch.Tensor]:
    """The docstring's bounds per query row: {'mean', 'lse', 'entropy'} (B,) float64."""
    d, n = query.shape[1], keys.shape[0]
    gamma_d = d * U32 / (1 - d * U32)
    u_q = _unit_roundoff(query.dtype) if query.dtype != torch.float32 else 0.0
    qa = query.to(torch.float64).abs()
    a = torch.zeros(query.shape[0], dtype=torch.float64, device=query.device)
    for start in range(0, n, chunk):
        ka = keys[start : start + chunk].to(torch.float64).abs()
        ks = key_sq[start : start + chunk].to(torch.float64).abs()
        a = torch.maximum(a, (qa @ ka.T + ks[None, :]).amax(dim=1))
    delta = inv_var * (2 * gamma_d + 4 * U32 + 6 * u_q) * a
    eps = torch.expm1(2 * delta)
    gamma_n = (n + 64) * U32
    u_v = _unit_roundoff(values.dtype)
    vmax = float(values.to(torch.float64).abs().max())
    h = ref_entropy.to(torch.float64)
    return {
        "mean": (eps + 2 * u_v + gamma_n) * vmax,
        "lse": delta + gamma_n,
        "entropy": 2 * delta + eps * h + gamma_n * (1 + 2 * h),
    }


def default_config(n: int, d: int, dv: int, b: int, dtype: torch.dtype) -> dict[str, int]:
    """Tile sizes; a function of the shapes only (never of the device), so results are reproducible.

    The batch size only sets BLOCK_B, which does not change any row's arithmetic.
    BLOCK_DV = 512 for wide values (two column blocks for D = 784, so the score
    tiles are computed twice, not four times), the fastest measured
    (bench/README.md). CHUNKED = 1 selects the two-product variant
    (shared/kernels/oracle_chunked.py, scores computed once); CHUNK and SPLIT
    are its training images per chunk and per program, BLOCK_B..num_stages
    shared by both variants. The tilings the benchmark compares with these
    live in bench/kernels_cases.py.
    """
    if INTERPRETED:  # few, big programs: the interpreter pays per program, not per element
        return {"BLOCK_B": min(next_pow2(b), 64), "BLOCK_N": min(next_pow2(n), 128), "BLOCK_D": min(next_pow2(d), 1024),
                "BLOCK_DV": min(next_pow2(dv), 1024), "SPLIT": n, "num_warps": 4, "num_stages": 1,
                "CHUNKED": 0, "CHUNK": 8192}
    if dtype in (torch.bfloat16, torch.float16) and dv > 128:
        # 16-bit wide values: the chunked variant (scores once), the fastest measured (bench/README.md)
        return dict(CHUNKED_DEFAULT_CONFIG)
    return {"BLOCK_B": 64, "BLOCK_N": 64, "BLOCK_D": 64, "BLOCK_DV": min(max(next_pow2(dv), 16), 512),
            "SPLIT": SPLIT_SIZE, "num_warps": 8 if dv > 128 else 4, "num_stages": 2, "CHUNKED": 0, "CHUNK": 8192}


#: the chunked variant's tiles for 16-bit wide values on a GPU: the weighted sum steps 64 training
#: images at a time, so its kernel needs half the shared memory and registers of steps of 128 and
#: several programs fit an SM (bench/README.md)
CHUNKED_DEFAULT_CONFIG = {"CHUNKED": 1, "BLOCK_B": 64, "BLOCK_N": 128, "BLOCK_D": 64, "BLOCK_DV": 128, "CHUNK": 8192,
                          "SPLIT": 1024, "num_warps": 4, "num_stages": 3, "PV_BLOCK_K": 64}


def supported(query: torch.Tensor, keys: torch.Tensor, values: torch.Tensor) -> bool:
    ok = (torch.float32, torch.bfloat16, torch.float16)
    return query.dtype in ok and keys.dtype == query.dtype and values.dtype in ok and query.ndim == keys.ndim == values.ndim == 2


if triton is not None:

    @triton.jit
    def _oracle_kernel(
        q_ptr, k_ptr, ksq_ptr, v_ptr, m_ptr, l_ptr, t_ptr, acc_ptr,
        B, N, D, DV, inv_var, n_per_split, stride_q, stride_k, stride_v,
        BLOCK_B: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_DV: tl.constexpr,
        DOT_F32: tl.constexpr, PREC: tl.constexpr,
    ):
        pid_b = tl.program_id(0)
        pid_v = tl.program_id(1)
        pid_s = tl.program_id(2)
        rows = pid_b * BLOCK_B + tl.arange(0, BLOCK_B)
        rmask = rows < B
        vcols = pid_v * BLOCK_DV + tl.arange(0, BLOCK_DV)
        vmask = vcols < DV
        lo = pid_s * n_per_split
        hi = tl.minimum(lo + n_per_split, N)
        m = tl.full([BLOCK_B], float("-inf"), tl.float32)
        l = tl.zeros([BLOCK_B], tl.float32)
        t = tl.zeros([BLOCK_B], tl.float32)
        acc = tl.zeros([BLOCK_B, BLOCK_DV], tl.float32)
        for j0 in range(lo, hi, BLOCK_N):
            cols = j0 + tl.arange(0, BLOCK_N)
            cmask = cols < hi
            s = tl.zeros([BLOCK_B, BLOCK_N], tl.float32)
            for d0 in range(0, D, BLOCK_D):
                dd = d0 + tl.arange(0, BLOCK_D)
                dmask = dd < D
                q = tl.load(q_ptr + rows[:, None].to(tl.int64) * stride_q + dd[None, :],
                            mask=rmask[:, None] & dmask[None, :], other=0.0)
                kt = tl.load(k_ptr + cols[None, :].to(tl.int64) * stride_k + dd[:, None],
                             mask=dmask[:, None] & cmask[None, :], other=0.0)
                if DOT_F32:
                    q = q.to(tl.float32)
                    kt = kt.to(tl.float32)
                s = tl.dot(q, kt, acc=s, input_precision=PREC)
            ksq = tl.load(ksq_ptr + cols, mask=cmask, other=0.0).to(tl.float32)
            s = (s - 0.5 * ksq[None, :]) * inv_var
            m_new = tl.maximum(m, tl.max(tl.where(cmask[None, :], s, float("-inf")), axis=1))
            alpha = tl.exp(m - m_new)  # 0 on the first tile (m = -inf)
            # masked columns get dlt = 0 and p = 0, so no inf * 0 ever appears
            dlt = tl.where(cmask[None, :], s - m_new[:, None], 0.0)
            p = tl.where(cmask[None, :], tl.exp(dlt), 0.0)
            t = alpha * (t + tl.where(l > 0, m - m_new, 0.0) * l) + tl.sum(p * dlt, axis=1)
            l = alpha * l + tl.sum(p, axis=1)
            v = tl.load(v_ptr + cols[:, None].to(tl.int64) * stride_v + vcols[None, :],
                        mask=cmask[:, None] & vmask[None, :], other=0.0)
            pv = p.to(v.dtype)  # the reference rounds the weights to the values' dtype too
            if DOT_F32:
                pv = pv.to(tl.float32)
                v = v.to(tl.float32)
            acc = tl.dot(pv, v, acc=acc * alpha[:, None], input_precision=PREC)
            m = m_new
        prow = pid_s * B + rows
        if pid_v == 0:
            tl.store(m_ptr + prow, m, mask=rmask)
            tl.store(l_ptr + prow, l, mask=rmask)
            tl.store(t_ptr + prow, t, mask=rmask)
        tl.store(acc_ptr + prow[:, None].to(tl.int64) * DV + vcols[None, :], acc, mask=rmask[:, None] & vmask[None, :])


def merge_splits(m: torch.Tensor, l: torch.Tensor, t: torch.Tensor, acc: torch.Tensor):
    """Merge per-split (m, l, t, acc) (S, B[, Dv]) in float64, in split order: (mean, lse, entropy)."""
    w, total_l, lse, entropy = _split_weights(m, l, t)
    mean = (w[:, :, None] * acc.to(torch.float64)).sum(dim=0) / total_l[:, None]
    return mean, lse, entropy


def _split_weights(m: torch.Tensor, l: torch.Tensor, t: torch.Tensor):
    """Float64 weights e^{m_s - max m} (S, B) of the splits, total l, lse and entropy (B,)."""
    m, l, t = (x.to(torch.float64) for x in (m, l, t))
    big = m.amax(dim=0)
    w = torch.where(l > 0, torch.exp(m - big), torch.zeros_like(l))
    shift = torch.where(l > 0, (m - big) * l, torch.zeros_like(l))
    total_l = (w * l).sum(dim=0)
    total_t = (w * (t + shift)).sum(dim=0)
    lse = big + torch.log(total_l)
    entropy = torch.log(total_l) - total_t / total_l
    return w, total_l, lse, entropy.clamp_min(0.0)


if triton is not None:

    @triton.jit
    def _combine_kernel(w_ptr, tot_ptr, acc_ptr, out_ptr, S, B, DV, BLOCK_R: tl.constexpr, BLOCK_C: tl.constexpr):
        """out[b, c] = sum_s w[s, b] acc[s, b, c] / tot[b] in float64, s in order (no atomics)."""
        rows = tl.program_id(0) * BLOCK_R + tl.arange(0, BLOCK_R)
        cols = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
        rmask = rows < B
        mask = rmask[:, None] & (cols < DV)[None, :]
        out = tl.zeros([BLOCK_R, BLOCK_C], tl.float64)
        for s in range(0, S):
            w = tl.load(w_ptr + s * B + rows, mask=rmask, other=0.0)
            a = tl.load(acc_ptr + (s * B + rows)[:, None].to(tl.int64) * DV + cols[None, :], mask=mask, other=0.0)
            out += w[:, None] * a.to(tl.float64)
        tot = tl.load(tot_ptr + rows, mask=rmask, other=1.0)
        tl.store(out_ptr + rows[:, None].to(tl.int64) * DV + cols[None, :], out / tot[:, None], mask=mask)


def combine_splits(m: torch.Tensor, l: torch.Tensor, t: torch.Tensor, acc: torch.Tensor, deterministic: bool = False):
    """merge_splits with the (S, B, Dv) weighted sum as one pass of a kernel (read acc once, no float64 copy)."""
    w, total_l, lse, entropy = _split_weights(m, l, t)
    s, b, dv = acc.shape
    mean = alloc((b, dv), torch.float64, acc.device)
    br, bc = (16, min(next_pow2(dv), 1024)) if INTERPRETED else (16, 128)
    _combine_kernel[(triton.cdiv(b, br), triton.cdiv(dv, bc))](
        w.contiguous(), total_l.contiguous(), acc, mean, s, b, dv, BLOCK_R=br, BLOCK_C=bc, num_warps=4,
        **launch_options(deterministic),
    )
    return mean, lse, entropy


def oracle_reduction_triton(
    query: torch.Tensor, keys: torch.Tensor, key_sq: torch.Tensor, values: torch.Tensor, inv_var: float,
    deterministic: bool = False, config: dict[str, int] | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The kernel; same arguments (no chunk: tiles are the kernel's own) and results as the reference.

    `config` overrides default_config's entries (CHUNKED = 1: the two-product variant).
    """
    if not supported(query, keys, values):
        raise ValueError("oracle kernel needs 2-D float32/bfloat16/float16 query, keys and values of one dtype")
    b, d = query.shape
    n, dv = values.shape
    dev = query.device
    query, keys, values = query.contiguous(), keys.contiguous(), values.contiguous()
    key_sq = key_sq.contiguous()
    cfg = dict(default_config(n, d, dv, b, query.dtype), **(config or {}))
    if cfg["CHUNKED"]:
        return combine_splits(*partials_chunked(query, keys, key_sq, values, inv_var, cfg, deterministic), deterministic)
    splits = max(1, math.ceil(n / cfg["SPLIT"]))
    m, l, t = (alloc((splits, b), torch.float32, dev) for _ in range(3))
    acc = alloc((splits, b, dv), torch.float32, dev)
    grid = (triton.cdiv(b, cfg["BLOCK_B"]), triton.cdiv(dv, cfg["BLOCK_DV"]), splits)
    dot_f32 = INTERPRETED or query.dtype == torch.float32
    _oracle_kernel[grid](
        query, keys, key_sq, values, m, l, t, acc, b, n, d, dv, float(inv_var), cfg["SPLIT"],
        query.stride(0), keys.stride(0), values.stride(0),
        BLOCK_B=cfg["BLOCK_B"], BLOCK_N=cfg["BLOCK_N"], BLOCK_D=cfg["BLOCK_D"], BLOCK_DV=cfg["BLOCK_DV"],
        DOT_F32=dot_f32, PREC="ieee",  # full float32 products wherever an operand is float32 (never TF32)
        num_warps=cfg["num_warps"], num_stages=cfg["num_stages"], **launch_options(deterministic),
    )
    return combine_splits(m, l, t, acc, deterministic)
