"""`nn.utils.rnn`: `pad_sequence`, PyTorch's way of batching sequences of different
lengths for an RNN (or a collate_fn).

Packed sequences (`pack_padded_sequence`, `PackedSequence` and the rest) are not here:
graphc's RNNs take padded batches, and a packed batch's layout depends on its lengths,
which a static graph would have to recompile for. Asking for one of them is an
AttributeError that says so.
"""
from __future__ import annotations

from ... import tensor_ops as T
from ...ir.errors import at_user_line
from ...tensor import full

_PACKED = ("PackedSequence", "pack_padded_sequence", "pad_packed_sequence", "pack_sequence",
           "unpack_sequence", "unpad_sequence")


def pad_sequence(sequences, batch_first=False, padding_value=0.0, padding_side="right"):
    """Stack tensors of shape (L_i, *) into (max L, B, *) (or (B, max L, *) with
    batch_first), each padded with `padding_value` after its values (or before them,
    padding_side='left'). The result has the first sequence's dtype, as in PyTorch."""
    if padding_side not in ("left", "right"):
        raise at_user_line(ValueError, f"Expected padding_side to be one of left or right, "
                                       f"but got {padding_side}.")
    seqs = list(sequences)
    if not seqs:
        raise at_user_line(RuntimeError, "received an empty list of sequences")
    first = seqs[0]
    trailing = tuple(first.shape[1:])
    longest = max(s.shape[0] for s in seqs)
    rows = []
    for s in seqs:
        if tuple(s.shape[1:]) != trailing:
            d = next((k for k, (a, b) in enumerate(zip(trailing, s.shape[1:])) if a != b), 0)
            other = tuple(s.shape[1:])
            a, b = (trailing[d], other[d]) if d < min(len(trailing), len(other)) else \
                (len(trailing), len(other))
            raise at_user_line(RuntimeError, f"The size of tensor a ({a}) must match the size "
                                             f"of tensor b ({b}) at non-singleton dimension "
                                             f"{d + 1}")
        s = s.to(first.dtype)
        gap = longest - s.shape[0]
        if gap:
            fill = full((gap,) + trailing, padding_value, dtype=first.dtype)
            s = T.cat([s, fill] if padding_side == "right" else [fill, s])
        rows.append(s)
    return T.stack(rows, dim=0 if batch_first else 1)


def __getattr__(name):
    if name in _PACKED:
        raise AttributeError(f"graphc.nn.utils.rnn has no {name}: packed sequences are not "
                             f"supported (graphc's RNNs take padded batches; see "
                             f"pad_sequence)")
    raise AttributeError(f"module 'graphc.nn.utils.rnn' has no attribute {name!r}")
