"""Training losses beyond sentence-transformers': in-batch ranking distilled from a teacher's precomputed embeddings."""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class TeacherDistillLoss(nn.Module):
    """MNRL plus the KL divergence from the teacher's in-batch score distribution to the student's.

    Every query is scored against every passage of the batch (its positive, the others' positives and all
    hard negatives), by the student and by the teacher, whose embeddings come precomputed in the `label`
    column (batch, columns, teacher_dim). The teacher's soft labels rank all passages of the batch, so a
    weak generator's noisy positive and in-batch false negatives count for what the teacher thinks they
    are (RocketQA / TAS-B style in-batch distillation). Works inside MatryoshkaLoss: the student's
    embeddings come from the model's forward, truncated per dim by the wrapper. With `gather_across_devices`,
    each rank's queries are scored against the passages of all data-parallel ranks, as in MNRL.
    """

    def __init__(
        self,
        model,
        scale: float = 20.0,
        teacher_scale: float = 20.0,
        distill_weight: float = 1.0,
        rank_weight: float = 1.0,
        gather_across_devices: bool = False,
    ) -> None:
        super().__init__()
        self.model = model
        self.scale = scale
        self.teacher_scale = teacher_scale
        self.distill_weight = distill_weight
        self.rank_weight = rank_weight
        self.gather_across_devices = gather_across_devices

    def forward(self, sentence_features: Iterable[dict[str, Tensor]], labels: Tensor) -> Tensor:
        from sentence_transformers.base.losses.merged_forward import embed_columns

        embeddings = [F.normalize(e, dim=-1) for e in embed_columns(self.model, sentence_features)]
        return self.compute_loss_from_embeddings(embeddings, labels)

    def compute_loss_from_embeddings(self, embeddings: list[Tensor], labels: Tensor) -> Tensor:
        """embeddings: query, positive, negatives...; labels: the teacher's embeddings of the same columns."""
        from sentence_transformers.util import all_gather, all_gather_with_grad, get_rank

        query, others, offset = embeddings[0], embeddings[1:], 0
        if self.gather_across_devices:  # every rank's passages, rank by rank; this rank's positives start at offset
            others, offset = [all_gather_with_grad(e) for e in others], get_rank() * len(query)
        passages = torch.cat(others)
        student = self.scale * query @ passages.T
        target = torch.arange(offset, offset + len(query), device=query.device)
        loss = self.rank_weight * F.cross_entropy(student, target) if self.rank_weight else student.new_zeros(())
        if self.distill_weight:
            teacher = F.normalize(labels.to(query.device, torch.float32), dim=-1)
            t_others = all_gather(teacher[:, 1:].contiguous()) if self.gather_across_devices else teacher[:, 1:]
            t_query, t_passages = teacher[:, 0], t_others.transpose(0, 1).reshape(-1, teacher.shape[-1])
            soft = F.softmax(self.teacher_scale * t_query @ t_passages.T, dim=-1)
            loss = loss + self.distill_weight * F.kl_div(F.log_softmax(student, dim=-1), soft, reduction="batchmean")
        return loss

    @property
    def citation(self) -> str:
        return "RocketQA (Qu et al., 2021); TAS-B (Hofstätter et al., 2021): in-batch negatives with teacher scores"

    def get_config_dict(self) -> dict:
        return {
            "scale": self.scale,
            "teacher_scale": self.teacher_scale,
            "distill_weight": self.distill_weight,
            "rank_weight": self.rank_weight,
            "gather_across_devices": self.gather_across_devices,
        }
