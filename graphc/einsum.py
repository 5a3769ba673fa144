"""einsum for the common forms, lowered to permute/reshape/matmul/sum.

Operands are contracted left to right, two at a time. For a pair, each label is a batch
label (in both operands and kept), a contracted label (in both, not kept), or a free
label of one side; labels that appear in one operand only and are not kept are summed
out first. The pair then becomes one batched matmul [B, M, K] @ [B, K, N]. `...` stands
for broadcast dims: it becomes fresh labels, right-aligned across operands. A label
repeated within one operand (`ii->i`, `ii`, `ij,jj->i`) first takes that operand's
diagonal over those dims (moved last, as `diagonal` does), so each label then appears
once per operand. A label repeated in the output raises, as in torch.
"""
from __future__ import annotations

import string

from .ir import dtypes as dt
from .ir.errors import at_user_line


def _parse(equation, operands):
    eq = equation.replace(" ", "")
    lhs, arrow, out = eq.partition("->")
    ins = lhs.split(",")
    if len(ins) != len(operands):
        raise at_user_line(ValueError, f"einsum: equation {equation!r} names {len(ins)} "
                                       f"operands, got {len(operands)}")
    ins, ellipsis = _expand_ellipsis(ins, operands, eq)
    if arrow:
        out = out.replace("...", ellipsis)
    else:
        # implicit output: the broadcast ('...') dims, then the labels used once, sorted
        counts = {}
        for c in "".join(ins):
            counts[c] = counts.get(c, 0) + 1
        out = ellipsis + "".join(sorted(c for c, k in counts.items()
                                        if k == 1 and c not in ellipsis))
    missing = [c for c in out if c not in "".join(ins)]
    if missing:
        raise at_user_line(RuntimeError, f"einsum: output subscript {missing[0]!r} does not "
                                         f"appear in the equation for any input operand")
    if len(set(out)) != len(out):
        c = next(c for c in out if out.count(c) > 1)
        raise at_user_line(RuntimeError, f"einsum: output subscript {c!r} appears more than "
                                         f"once in the output {out!r}")
    return ins, out


def _expand_ellipsis(ins, operands, eq):
    """Replace '...' by labels of their own, right-aligned across operands (so the
    broadcast dims line up as in broadcasting). Returns the new subscripts and the
    labels standing for the longest '...'."""
    spare = [c for c in string.ascii_letters if c not in eq]
    counts = []
    for s, t in zip(ins, operands):
        n = t.ndim - (len(s) - 3) if "..." in s else 0
        if n < 0:
            raise at_user_line(RuntimeError, f"einsum: operand with shape {list(t.shape)} "
                                             f"has fewer dims than subscripts {s!r}")
        counts.append(n)
    width = max(counts, default=0)
    labels = "".join(spare[:width])
    return [s.replace("...", labels[width - n:]) for s, n in zip(ins, counts)], labels


def _diagonals(t, ls, k):
    """Replace each label repeated in subscripts `ls` of operand `k` by one: take the
    diagonal over its first two dims (it goes last), again while it still repeats."""
    shape, given = list(t.shape), ls
    for c in dict.fromkeys(ls):
        while ls.count(c) > 1:
            d1 = ls.index(c)
            d2 = ls.index(c, d1 + 1)
            if t.shape[d1] != t.shape[d2]:
                raise at_user_line(RuntimeError, f"einsum: subscript {c!r} is repeated for "
                                                 f"operand {k} but the sizes don't match, "
                                                 f"{t.shape[d2]} != {t.shape[d1]} (operand "
                                                 f"shape {shape}, subscripts {given!r})")
            t = t.diagonal(0, d1, d2)
            ls = ls[:d1] + ls[d1 + 1:d2] + ls[d2 + 1:] + c
    return t, ls


def _sum_out(t, labels, keep):
    drop = [k for k, c in enumerate(labels) if c not in keep]
    if drop:
        t = t.sum(tuple(drop))
        labels = "".join(c for c in labels if c in keep)
    return t, labels


def _contract(a, la, b, lb, keep):
    a, la = _sum_out(a, la, set(lb) | keep)
    b, lb = _sum_out(b, lb, set(la) | keep)
    batch = [c for c in la if c in lb and c in keep]
    contract = [c for c in la if c in lb and c not in keep]
    free_a = [c for c in la if c not in lb]
    free_b = [c for c in lb if c not in la]
    size = {}
    for t, ls in ((a, la), (b, lb)):
        for c, s in zip(ls, t.shape):
            if c in size and size[c] != s and 1 not in (size[c], s):
                raise at_user_line(RuntimeError, f"einsum: label {c!r} has sizes {size[c]} "
                                                 f"and {s} (operand shapes {list(a.shape)} "
                                                 f"and {list(b.shape)})")
            size[c] = max(size.get(c, 1), s)

    def arrange(t, ls, first, second):
        order = [ls.index(c) for c in batch + first + second]
        t = t.permute(order)
        t = t.expand(*[size[c] for c in batch + first + second])
        prod = lambda cs: _prod(size[c] for c in cs)
        return t.reshape(prod(batch), prod(first), prod(second))

    if a.dtype is not b.dtype:
        # as PyTorch's einsum: a pair it contracts goes through bmm, which refuses mixed
        # dtypes; one it only multiplies elementwise promotes
        from .tensor_ops import result_type
        if contract:
            raise at_user_line(RuntimeError, f"expected scalar type "
                                             f"{dt.TORCH_NAMES[a.dtype.name]} but found "
                                             f"{dt.TORCH_NAMES[b.dtype.name]}")
        d = result_type(a, b)
        a, b = a._cast(d), b._cast(d)
    am = arrange(a, la, free_a, contract)
    bm = arrange(b, lb, contract, free_b)
    r = am @ bm
    labels = batch + free_a + free_b
    return r.reshape(*[size[c] for c in labels]), "".join(labels)


def _prod(xs):
    n = 1
    for x in xs:
        n *= x
    return n


def einsum(equation, *operands):
    ins, out = _parse(equation, operands)
    for t, ls in zip(operands, ins):
        if t.ndim != len(ls):
            raise at_user_line(RuntimeError, f"einsum: operand with shape {list(t.shape)} does "
                                             f"not fit subscripts {ls!r}")
    operands, ins = zip(*[_diagonals(t, ls, k)
                          for k, (t, ls) in enumerate(zip(operands, ins))])
    cur, cl = operands[0], ins[0]
    for k in range(1, len(operands)):
        later = set(out).union(*[set(s) for s in ins[k + 1:]])
        cur, cl = _contract(cur, cl, operands[k], ins[k], later)
    cur, cl = _sum_out(cur, cl, set(out))
    return cur.permute([cl.index(c) for c in out]) if cl != out else cur
