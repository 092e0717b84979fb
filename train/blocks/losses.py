"""Contrastive objectives, each the equation of its paper."""
from __future__ import annotations

import math

import torch
from torch.nn import functional as F


def at(index: torch.Tensor, width: int) -> torch.Tensor:
    """The boolean [len(index), width] mask of row r's column index[r], as F.one_hot(index, width).bool() in
    one comparison, without one_hot's range check, which reads the index back to the host on a CPU."""
    return index[:, None] == torch.arange(width, device=index.device)


def nce_loss(positive: torch.Tensor, noise: torch.Tensor, log_z: torch.Tensor, num_data: int) -> torch.Tensor:
    """Noise-contrastive estimation of the non-parametric softmax (Wu et al. 2018, eqs. 5-7).

    ``positive`` [B] and ``noise`` [B, m] are the logits v.f/T of each example's own bank row
    and of m rows drawn uniformly (P_n = 1/n). With P(i|v) = exp(v.f/T) / Z and
    h(i, v) = P(i|v) / (P(i|v) + m P_n), the loss is
        J = -E_data[log h(i, v)] - m E_noise[log(1 - h(i, v'))],
    computed in log space: log h = -softplus(log(m P_n) - s), log(1 - h) = -softplus(s - log(m P_n)),
    where s = logit - log Z.
    """
    log_noise = math.log(noise.shape[1] / num_data)  # log(m * P_n)
    data_term = F.softplus(log_noise - (positive - log_z))
    noise_term = F.softplus((noise - log_z) - log_noise).sum(dim=1)
    return (data_term + noise_term).mean()


def estimate_log_z(logits: torch.Tensor, num_data: int) -> torch.Tensor:
    """Monte Carlo estimate of the partition function, Z ~ n * mean_j exp(v_j.f/T) (eq. 8), as log Z."""
    return torch.logsumexp(logits.flatten(), dim=0) - math.log(logits.numel()) + math.log(num_data)


def invariance_spreading_loss(features: torch.Tensor, keys: torch.Tensor | None = None, offset: int = 0,
                              temperature: float = 0.1) -> tuple[torch.Tensor, torch.Tensor]:
    """InvaSpread's instance-wise softmax on the batch's own features (Ye et al. 2019, eqs. 3-6: P(i|x^_i),
    P(i|x_j), their joint probability and its negative log-likelihood), as the authors' ``BatchCriterion``
    (``BatchAverage.py``) computes it with ``negM=1``.

    ``features`` [2b, d] are unit vectors of two views of b images, view 1 of every image and then view 2
    (as :class:`~train.blocks.views.TwoViews` lays them out): the views of image i are rows i and i + b.
    ``keys`` [N, d] are what the softmax runs over, holding ``features`` at rows ``offset`` to
    ``offset + 2b`` (by default ``features`` themselves; under DDP every rank's, gathered). Each feature
    x_i is an anchor, i' its other view:

        P(j|x_i) = exp(x_i.f_j / T) / sum_{k != i} exp(x_i.f_k / T)     (over every key but x_i itself)
        loss = -1/2b sum_i [log P(i'|x_i) + sum_{j not in {i, i'}} log(1 - P(j|x_i))]

    The keys f_j are constants, as ``x.t().data`` in the code: gradient reaches a feature only as an anchor.

    Where the code departs from the paper, this follows the code:
    - The paper pairs an original x_i with one augmentation x^_i; the positive's softmax runs over the m
      originals f_k (eq. 3) and each negative P(i|x_j) over the m originals too, x_j's own exp(1/T)
      included (eq. 4). The code augments twice and is symmetric: all 2m features are anchors, each
      against the other 2m - 1 of both views, itself excluded.
    - The paper sums over the batch (eq. 6); the code divides by the 2m anchors.
    - The paper's equations write no stop-gradient; the code detaches the non-anchor side.
    - The code sums log(1 - P(j|x_i)) over every j != i and then subtracts the positive's term; here the
      positive is left out of the sum: the same number, without the cancellation as P(i'|x_i) -> 1.

    Returns the loss and, detached, P(i'|x_i) of every anchor (how invariant the views are).
    """
    if len(features) % 2:
        raise ValueError(f"features holds {len(features)} rows: it needs two views of each image, view 1 of every "
                         "image then view 2 (train.blocks.views.TwoViews makes them)")
    keys = features if keys is None else keys
    rows = torch.arange(len(features), device=features.device)
    own = offset + rows
    positive = offset + (rows + len(features) // 2) % len(features)
    with torch.autocast(features.device.type, enabled=False):  # logits up to 1/T: float32, not bf16
        logits = features.float() @ keys.detach().float().T / temperature
        own_mask = at(own, len(keys))
        log_p = logits.masked_fill(own_mask, float("-inf")).log_softmax(dim=1)
        log_p_positive = log_p.gather(1, positive[:, None]).squeeze(1)
        p_negative = log_p.exp().masked_fill(own_mask | at(positive, len(keys)), 0.0)
        loss = -(log_p_positive.sum() + torch.log1p(-p_negative).sum()) / len(features)
    return loss, log_p_positive.detach().exp()


def info_nce(q: torch.Tensor, k: torch.Tensor, queue: torch.Tensor, temperature: float = 0.07
             ) -> tuple[torch.Tensor, torch.Tensor]:
    """MoCo's InfoNCE (He et al. 2020, eq. 1): L_q = -log exp(q.k+ / T) / sum_{i=0..K} exp(q.k_i / T).

    ``q`` [B, d] are the queries, ``k`` [B, d] their positive keys, ``queue`` [K, d] the negatives; all
    unit vectors. As the authors' code, the logits are [q.k+ | q.queue] / T and the positive is class 0
    of a (K + 1)-way cross-entropy, in float32 whatever the autocast. Returns the loss and, detached, the
    fraction of queries whose positive scores highest (the dictionary look-up's accuracy).
    """
    with torch.autocast(q.device.type, enabled=False):
        q, k, queue = q.float(), k.float(), queue.float()
        logits = torch.cat([(q * k).sum(dim=1, keepdim=True), q @ queue.T], dim=1) / temperature
        labels = torch.zeros(len(q), dtype=torch.long, device=q.device)
        return F.cross_entropy(logits, labels), (logits.argmax(dim=1) == 0).float().mean().detach()


def nt_xent(z: torch.Tensor, keys: torch.Tensor | None = None, offset: int = 0, temperature: float = 0.5,
            negatives: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """SimCLR's NT-Xent (Chen et al. 2020, eq. 1 and Algorithm 1):

        l(i, j) = -log exp(sim(z_i, z_j) / T) / sum_{k != i} exp(sim(z_i, z_k) / T)

    averaged over all 2N ordered positive pairs, sim the cosine similarity. ``z`` [2b, d] are unit
    vectors of two views of b images, view 1 of every image then view 2, so image i's views are rows i
    and i + b. ``keys`` [M, d] are what the softmax runs over and hold ``z`` at rows ``offset`` to
    ``offset + 2b``: by default ``z`` itself; across processes, every process's ``z`` gathered *with*
    gradients (``distributed.gather_with_grad``), as the paper's global batch of N = 4096. Unlike
    InvaSpread the keys are not constants: gradient reaches every view as anchor and as key.
    ``negatives`` [K, d] (SimCLR v2's memory) join every denominator as constants.

    Returns the loss over this process's 2b anchors and, detached, the fraction whose positive scores
    highest among the keys.
    """
    if len(z) % 2:
        raise ValueError(f"z holds {len(z)} rows: it needs two views of each image, view 1 of every image "
                         "then view 2 (train.blocks.views.TwoViews makes them)")
    keys = z if keys is None else keys
    rows = torch.arange(len(z), device=z.device)
    positive = offset + (rows + len(z) // 2) % len(z)
    with torch.autocast(z.device.type, enabled=False):  # logits up to 1/T: float32, not bf16
        logits = z.float() @ keys.float().T / temperature
        logits = logits.masked_fill(at(offset + rows, len(keys)), float("-inf"))  # k != i
        if negatives is not None:
            logits = torch.cat([logits, z.float() @ negatives.detach().float().T / temperature], dim=1)
        return F.cross_entropy(logits, positive), (logits.argmax(dim=1) == positive).float().mean().detach()


def negative_cosine(p: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """SimSiam's D(p, z) = -(p / ||p||_2) . (z / ||z||_2) (Chen & He 2021, eq. 1), averaged over the batch, in
    float32 whatever the autocast. It stops no gradient itself: the caller writes ``z.detach()`` where the
    paper writes stopgrad(z) (eq. 2), so that the ablation without it (Sec. 4.1) is the same call.
    BYOL's loss (Grill et al. 2020, eq. 2) is ||p/||p|| - z/||z|| ||^2 = 2 + 2 D(p, z)."""
    with torch.autocast(p.device.type, enabled=False):
        return -(F.normalize(p.float(), dim=1) * F.normalize(z.float(), dim=1)).sum(dim=1).mean()


def regression_loss(p: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """BYOL's loss (Grill et al. 2020, eq. 2): ||p / ||p|| - z / ||z|| ||^2 = 2 - 2 cos(p, z), averaged over the
    batch, as the authors' ``regression_loss``; the caller stops z's gradient (the target network's)."""
    return 2 + 2 * negative_cosine(p, z)


def in_batch_info_nce(q: torch.Tensor, keys: torch.Tensor, offset: int = 0, temperature: float = 1.0
                      ) -> tuple[torch.Tensor, torch.Tensor]:
    """MoCo v3's ctr(q, k) (Chen, Xie & He 2021, eq. 1 and Algorithm 1): InfoNCE with the keys of the same batch,

        L_q = -log exp(q . k+ / T) / sum_k exp(q . k / T),

    query i's positive the key of the same image under the other view, the other images' keys its negatives
    (no queue). ``q`` [b, d] are this process's queries, ``keys`` [M, d] every process's keys (gathered without
    gradient), query i's at row ``offset + i``. As the authors' code: both normalised here, the cross-entropy times
    2T (which makes the gradient's scale not depend on T), in float32 whatever the autocast. Returns the loss and,
    detached, the fraction of queries whose key scores highest.
    """
    with torch.autocast(q.device.type, enabled=False):
        q, keys = F.normalize(q.float(), dim=1), F.normalize(keys.float(), dim=1)
        logits = q @ keys.T / temperature
        positive = offset + torch.arange(len(q), device=q.device)
        loss = F.cross_entropy(logits, positive) * (2 * temperature)
        return loss, (logits.argmax(dim=1) == positive).float().mean().detach()


def dino_loss(student: torch.Tensor, teacher: torch.Tensor, center: torch.Tensor, crops: int,
              student_temperature: float = 0.1, teacher_temperature: float = 0.04) -> torch.Tensor:
    """DINO's cross-entropy (Caron et al. 2021, eq. 2 and Algorithm 1), over every (teacher crop, other student crop)
    pair:

        H(P_t(x), P_s(x')) = -sum_k P_t(x)_k log P_s(x')_k,
        P_s = softmax(g_s / T_s),   P_t = softmax((g_t - c) / T_t),

    the teacher's outputs centred by ``c`` and sharpened by T_t < T_s, without gradient. ``student`` [V b, K] holds
    every crop (V = ``crops``), crop v at rows v b .. (v + 1) b - 1; ``teacher`` [G b, K] the global crops, in the
    order of the student's first G. Each pair's cross-entropy is averaged over the batch, then the pairs are
    averaged (crop v is never paired with itself), as the authors' ``DINOLoss``; in float32 whatever the autocast.
    """
    with torch.autocast(student.device.type, enabled=False):
        batch = len(student) // crops
        globals_ = len(teacher) // batch
        log_p = F.log_softmax(student.float() / student_temperature, dim=-1).view(crops, batch, -1)
        q = F.softmax((teacher.detach().float() - center) / teacher_temperature, dim=-1).view(globals_, batch, -1)
        cross = -torch.einsum("gbk,vbk->gv", q, log_p) / batch  # [G, V]: each pair's batch-mean cross-entropy
        same = torch.eye(globals_, crops, dtype=torch.bool, device=cross.device)
        return cross.masked_fill(same, 0.0).sum() / (globals_ * crops - globals_)  # no mask index: no host sync
