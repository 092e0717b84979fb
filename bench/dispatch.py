"""The tensor operators a piece of code dispatches, counted one way for every benchmark that counts them
(``bench.step_ops``: a training step; ``bench.views``: the views alone).

Each aten operator is counted by name as it reaches a backend, after autograd, so a backward pass is counted
too and a composite operator counts as the operators it becomes, not twice. Operators that only make a view
of a tensor or allocate one launch no kernel. A host sync is an operator whose result the host must wait
for: a value or a size read back from the device (``item``, ``nonzero``, a boolean mask's index, whose
``nonzero`` runs inside it), a copy to the host, or a copy from pageable host memory to a device (the host
waits for it to be staged). On a GPU each stalls the host until the device's queue drains. A multi-tensor
(``_foreach_``) operator counts once though it launches a kernel per chunk.
"""
from __future__ import annotations

from collections import Counter

import torch
from torch.utils._python_dispatch import TorchDispatchMode

# operators that make a view of a tensor or allocate one: no kernel launch
NO_KERNEL = {"view", "_unsafe_view", "as_strided", "as_strided_", "detach", "alias", "expand", "permute", "t", "t_",
             "transpose", "transpose_", "unsqueeze", "unsqueeze_", "squeeze", "squeeze_", "slice", "select",
             "diagonal", "unfold", "split", "split_with_sizes", "chunk", "unbind", "_reshape_alias", "empty",
             "empty_like", "empty_strided", "new_empty", "new_empty_strided", "lift_fresh", "set_", "resize_"}
# operators whose result's size or value the host must read
READS_BACK = {"_local_scalar_dense", "nonzero", "masked_select", "_unique", "_unique2", "unique_dim",
              "unique_consecutive", "bincount", "histc", "repeat_interleave"}
INDEXING = {"index", "index_put", "index_put_", "_index_put_impl_"}


def crosses_to_wait(name: str, args, kwargs) -> bool:
    """A copy the host waits for: device to host, or pageable host memory to a device."""
    if name == "_to_copy":
        source, destination = args[0], kwargs.get("device")
    elif name == "copy_":
        source, destination = args[1], args[0].device
    else:
        return False
    if not isinstance(source, torch.Tensor) or destination is None:
        return False
    to, on = torch.device(destination).type, source.device.type
    if on != "cpu" and to == "cpu":
        return True
    return on == "cpu" and to not in ("cpu", "meta") and not source.is_pinned()


def masked_index(name: str, args) -> bool:
    """An index by a boolean mask: its size is the mask's count, which the host must read."""
    return name in INDEXING and len(args) > 1 and any(
        isinstance(i, torch.Tensor) and i.dtype in (torch.bool, torch.uint8) for i in args[1] or ())


class Dispatched(TorchDispatchMode):
    """Counts each aten operator by name as it reaches a backend, and those among them that sync."""

    def __init__(self):
        super().__init__()
        self.ops: Counter = Counter()
        self.synced: Counter = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name, kwargs = func.overloadpacket.__name__, kwargs or {}
        self.ops[name] += 1
        if name in READS_BACK or masked_index(name, args) or crosses_to_wait(name, args, kwargs):
            self.synced[name] += 1
        return func(*args, **kwargs)

    @property
    def total(self) -> int:
        return sum(self.ops.values())

    @property
    def kernels(self) -> int:
        return sum(n for op, n in self.ops.items() if op not in NO_KERNEL)

    @property
    def syncs(self) -> int:
        return sum(self.synced.values())


def dispatched(fn) -> Dispatched:
    with Dispatched() as counted:
        fn()
    return counted


def host_syncs(fn) -> set[str]:
    """The names of the operators of ``fn()`` that make the host wait for the device."""
    return set(dispatched(fn).synced)
