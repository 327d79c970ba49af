"""The oracle reduction as two tiled matrix products per chunk of the training set (the default for 16-bit values).

Same inputs, outputs and error bound as scalespace.kernels.oracle_reduction (read
its docstring first). The training set is cut into chunks of CHUNK images (a
constant, so no row's arithmetic depends on the batch); per chunk:

1. `_scores_kernel`, grid (B / BLOCK_B, CHUNK / BLOCK_N): the score tile
   s = (q k^T - |k|^2 / 2) / sigma^2 over all of D (one product, computed once),
   its row maximum m_tile, p = e^{s - m_tile} (written in the values' dtype to a
   (B, CHUNK) scratch: memory O(B CHUNK), never B x n), l_tile = sum p and
   t_tile = sum p (s - m_tile).
2. `_pv_kernel`, grid (B / PV_BLOCK_B, Dv / BLOCK_DV, CHUNK / SPLIT): each
   program takes SPLIT training images, first finds their maximum m_r over the
   tiles' maxima, then accumulates sum_tile e^{m_tile - m_r} (p_tile @ v_tile),
   each tile's product in steps of PV_BLOCK_K images: the rescaling is exact
   in float32 and no running accumulator is ever rescaled.
   With P32 = 1 the scratch holds p in float32 and each tile is scaled before
   it is rounded to the values' dtype (one rounding, as before), so the
   product accumulates in place (twice the scratch bytes).

The per-split partials (m, l, t, acc) are merged in split order in float64
(oracle_reduction.combine_splits). Compared with the streaming kernel, the
scores are never recomputed per Dv block; the price is the (B, CHUNK) scratch
(CHUNK = 8192: 16 MiB in bfloat16 for B = 1024, resident in L2), written once
and read once per Dv block. p is rounded once to the values' dtype, as in the
streaming kernel (relative to the tile's maximum instead of the running one:
the same relative rounding), so the streaming kernel's error bound holds.

The two kernels may be tiled differently: PV_BLOCK_B, PV_BLOCK_K (a divisor of
BLOCK_N), PV_WARPS and PV_STAGES default to BLOCK_B, BLOCK_N, num_warps and
num_stages. Bigger tiles read the keys and values from L2 fewer times (a
BLOCK_B x BLOCK_N score tile reads 2 (BLOCK_B + BLOCK_N) bytes per 2 BLOCK_B
BLOCK_N FLOPs and step of D), and a 128 x 256 score tile's weighted sum only
fits the shared memory of a pipeline in steps of 64 images.

FLOPs: 2 B n D + 2 B n Dv (each product once; Dv padded to BLOCK_DV).
"""

from __future__ import annotations

import math

import torch

from scalespace.kernels._triton import INTERPRETED, alloc, launch_options, tl, triton

if triton is not None:

    @triton.jit
    def _scores_kernel(
        q_ptr, k_ptr, ksq_ptr, p_ptr, mt_ptr, lt_ptr, tt_ptr,
        B, c0, c1, D, inv_var, stride_q, stride_k, stride_p, stride_t,
        BLOCK_B: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr, DOT_F32: tl.constexpr,
    ):
        pid_b = tl.program_id(0)
        pid_n = tl.program_id(1)
        rows = pid_b * BLOCK_B + tl.arange(0, BLOCK_B)
        rmask = rows < B
        local = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
        cols = c0 + local
        cmask = cols < c1
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
            s = tl.dot(q, kt, acc=s, input_precision="ieee")
        ksq = tl.load(ksq_ptr + cols, mask=cmask, other=0.0).to(tl.float32)
        s = (s - 0.5 * ksq[None, :]) * inv_var
        mt = tl.max(tl.where(cmask[None, :], s, float("-inf")), axis=1)  # every tile has a valid column
        dlt = tl.where(cmask[None, :], s - mt[:, None], 0.0)
        p = tl.where(cmask[None, :], tl.exp(dlt), 0.0)
        tl.store(p_ptr + rows[:, None].to(tl.int64) * stride_p + local[None, :], p.to(p_ptr.dtype.element_ty),
                 mask=rmask[:, None])
        at = rows.to(tl.int64) * stride_t + pid_n
        tl.store(mt_ptr + at, mt, mask=rmask)
        tl.store(lt_ptr + at, tl.sum(p, axis=1), mask=rmask)
        tl.store(tt_ptr + at, tl.sum(p * dlt, axis=1), mask=rmask)

    @triton.jit
    def _pv_kernel(
        p_ptr, mt_ptr, lt_ptr, tt_ptr, v_ptr, m_ptr, l_ptr, t_ptr, acc_ptr,
        B, c0, c1, DV, stride_p, stride_v, stride_t, n_tiles, tiles_per_split, split0,
        BLOCK_B: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, BLOCK_DV: tl.constexpr,
        DOT_F32: tl.constexpr, P32: tl.constexpr,
    ):
        pid_b = tl.program_id(0)
        pid_v = tl.program_id(1)
        pid_s = tl.program_id(2)
        rows = pid_b * BLOCK_B + tl.arange(0, BLOCK_B)
        rmask = rows < B
        vcols = pid_v * BLOCK_DV + tl.arange(0, BLOCK_DV)
        vmask = vcols < DV
        j_lo = pid_s * tiles_per_split
        j_hi = tl.minimum(j_lo + tiles_per_split, n_tiles)
        m_r = tl.full([BLOCK_B], float("-inf"), tl.float32)
        for j in range(j_lo, j_hi):
            m_r = tl.maximum(m_r, tl.load(mt_ptr + rows.to(tl.int64) * stride_t + j, mask=rmask, other=0.0))
        # the tiles' sums, each weighted by e^{m_tile - m_r}: a pass over the (B, tiles) statistics
        l_r = tl.zeros([BLOCK_B], tl.float32)
        t_r = tl.zeros([BLOCK_B], tl.float32)
        for j in range(j_lo, j_hi):
            at = rows.to(tl.int64) * stride_t + j
            mt = tl.load(mt_ptr + at, mask=rmask, other=0.0)
            lt = tl.load(lt_ptr + at, mask=rmask, other=0.0)
            tt = tl.load(tt_ptr + at, mask=rmask, other=0.0)
            w = tl.exp(mt - m_r)
            l_r += w * lt
            t_r += w * (tt + (mt - m_r) * lt)
        # the weighted sum, BLOCK_K training images a step (BLOCK_N // BLOCK_K steps a score tile): one
        # pipelined loop, so the operand buffers are those of one step whatever the score tile's width
        SUB: tl.constexpr = BLOCK_N // BLOCK_K
        acc = tl.zeros([BLOCK_B, BLOCK_DV], tl.float32)
        for st in range(j_lo * SUB, j_hi * SUB):
            w = tl.exp(tl.load(mt_ptr + rows.to(tl.int64) * stride_t + st // SUB, mask=rmask, other=0.0) - m_r)
            local = st * BLOCK_K + tl.arange(0, BLOCK_K)
            cols = c0 + local
            cmask = cols < c1
            p = tl.load(p_ptr + rows[:, None].to(tl.int64) * stride_p + local[None, :], mask=rmask[:, None], other=0.0)
            v = tl.load(v_ptr + cols[:, None].to(tl.int64) * stride_v + vcols[None, :],
                        mask=cmask[:, None] & vmask[None, :], other=0.0)
            if P32:  # float32 scratch: scale, then round once to the values' dtype; acc stays the dot's accumulator
                p = (p * w[:, None]).to(v_ptr.dtype.element_ty)
                if DOT_F32:
                    p = p.to(tl.float32)
                    v = v.to(tl.float32)
                acc = tl.dot(p, v, acc=acc, input_precision="ieee")
            else:
                if DOT_F32:
                    p = p.to(tl.float32)
                    v = v.to(tl.float32)
                acc += tl.dot(p, v, input_precision="ieee") * w[:, None]
        prow = split0 + pid_s
        prow = prow.to(tl.int64) * B + rows
        if pid_v == 0:
            tl.store(m_ptr + prow, m_r, mask=rmask)
            tl.store(l_ptr + prow, l_r, mask=rmask)
            tl.store(t_ptr + prow, t_r, mask=rmask)
        tl.store(acc_ptr + prow[:, None] * DV + vcols[None, :], acc, mask=rmask[:, None] & vmask[None, :])


def partials_chunked(
    query: torch.Tensor, keys: torch.Tensor, key_sq: torch.Tensor, values: torch.Tensor, inv_var: float,
    cfg: dict[str, int], deterministic: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-split partials (m, l, t (S, B) float32, acc (S, B, Dv) float32); contiguous inputs of one dtype."""
    b, d = query.shape
    n, dv = values.shape
    dev = query.device
    bn, chunk, split = cfg["BLOCK_N"], cfg["CHUNK"], cfg["SPLIT"]
    if chunk % bn or split % bn or chunk % split:
        raise ValueError("oracle chunked variant: CHUNK must be a multiple of SPLIT, SPLIT of BLOCK_N")
    chunk = min(chunk, math.ceil(n / split) * split)
    tiles_chunk, tiles_split = chunk // bn, split // bn
    splits = math.ceil(n / split)
    m, l, t = (alloc((splits, b), torch.float32, dev) for _ in range(3))
    acc = alloc((splits, b, dv), torch.float32, dev)
    p32 = bool(cfg.get("P32", 0))
    p = alloc((b, chunk), torch.float32 if p32 else values.dtype, dev)
    mt, lt, tt = (alloc((b, tiles_chunk), torch.float32, dev) for _ in range(3))
    # the weighted-sum kernel may take its own tiles (PV_*; by default the score kernel's)
    pv_b = cfg.get("PV_BLOCK_B", cfg["BLOCK_B"])
    pv_k = cfg.get("PV_BLOCK_K", bn)
    if pv_k > bn or bn % pv_k or pv_k < 16:
        raise ValueError(f"oracle chunked variant: PV_BLOCK_K ({pv_k}) must divide BLOCK_N ({bn}) and be at least 16")
    dot_f32 = INTERPRETED or query.dtype == torch.float32
    opts = dict(num_warps=cfg["num_warps"], num_stages=cfg["num_stages"], **launch_options(deterministic))
    pv_opts = dict(num_warps=cfg.get("PV_WARPS", cfg["num_warps"]), num_stages=cfg.get("PV_STAGES", cfg["num_stages"]),
                   **launch_options(deterministic))
    for c0 in range(0, n, chunk):
        c1 = min(c0 + chunk, n)
        n_tiles = math.ceil((c1 - c0) / bn)
        _scores_kernel[(triton.cdiv(b, cfg["BLOCK_B"]), n_tiles)](
            query, keys, key_sq, p, mt, lt, tt, b, c0, c1, d, float(inv_var),
            query.stride(0), keys.stride(0), chunk, tiles_chunk,
            BLOCK_B=cfg["BLOCK_B"], BLOCK_N=bn, BLOCK_D=cfg["BLOCK_D"], DOT_F32=dot_f32, **opts,
        )
        _pv_kernel[(triton.cdiv(b, pv_b), triton.cdiv(dv, cfg["BLOCK_DV"]), math.ceil(n_tiles / tiles_split))](
            p, mt, lt, tt, values, m, l, t, acc, b, c0, c1, dv, chunk, values.stride(0), tiles_chunk, n_tiles, tiles_split,
            c0 // split, BLOCK_B=pv_b, BLOCK_N=bn, BLOCK_K=pv_k, BLOCK_DV=cfg["BLOCK_DV"], DOT_F32=dot_f32, P32=p32, **pv_opts,
        )
    return m, l, t, acc
