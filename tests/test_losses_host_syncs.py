"""The contrastive losses never read a tensor's value back to the host (on a GPU each such read stalls the
host until the device's queue drains). Checked on the CPU, where F.one_hot's range check used to read one."""
import pytest
import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

from train.blocks import losses

HOST_READS = {"_local_scalar_dense", "nonzero", "masked_select"}


class HostReads(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.seen = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func.overloadpacket.__name__ in HOST_READS:
            self.seen.append(func.overloadpacket.__name__)
        return func(*args, **(kwargs or {}))


def unit(n, seed):
    return F.normalize(torch.randn(n, 8, generator=torch.Generator().manual_seed(seed)), dim=1)


LOSSES = {
    "nt_xent": lambda z, keys: losses.nt_xent(z, keys, 3, 0.5, negatives=unit(4, 2))[0],
    "invariance_spreading_loss": lambda z, keys: losses.invariance_spreading_loss(z, keys, 3, 0.1)[0],
    "info_nce": lambda z, keys: losses.info_nce(z[:3], keys[:3], unit(5, 3))[0],
    "in_batch_info_nce": lambda z, keys: losses.in_batch_info_nce(z, keys.detach(), 3, 0.2)[0],
    "dino_loss": lambda z, keys: losses.dino_loss(z, keys[:4].detach(), unit(1, 5), crops=3),
}


@pytest.mark.parametrize("name", LOSSES)
def test_the_loss_and_its_gradient_never_read_a_device_value_back(name):
    z = unit(6, 0).requires_grad_()
    keys = torch.cat([unit(3, 1), z, unit(3, 4)])  # this process's rows at offset 3, as gathered under DDP
    with HostReads() as reads:
        LOSSES[name](z, keys).backward()
    assert reads.seen == []
    assert z.grad.norm() > 0


def test_the_mask_marks_each_rows_index():
    assert losses.at(torch.tensor([2, 0]), 3).tolist() == [[False, False, True], [True, False, False]]
