"""trl's importance-sampling correction for GRPO rollouts that an engine outside the trainer sampled.

An inference engine samples from a slightly different policy than the trainer computes (another dtype,
other kernels, its own copy of the adapter), so trl corrects the loss by the ratio of the trainer's
log-probability of every completion token to the one it was sampled with
(``vllm_importance_sampling_correction``, with ``vllm_importance_sampling_mode`` and its clip bounds).
trl 1.16 does so only for its own vLLM engine (``use_vllm``). The kit's self-play rollouts can come from an
engine of the kit's instead — the profile's vLLM engine serving the policy's adapter, or any backend whose
``generate_sampled`` gives the sampling log-probabilities (``kit.selfplay.rollout``) — and return those
log-probabilities from the ``rollout_func``.

:class:`EngineGRPOTrainer` is trl's ``GRPOTrainer`` that runs trl's own correction code on them: while trl
scores a batch of completions and while it computes the loss it reads ``use_vllm`` as on (so the correction
keys act exactly as with trl's engine), and while it generates it reads it as off (there is no trl engine to
sync weights into). In trl 1.16 nothing else on those paths reads ``use_vllm``; ``tests/test_selfplay.py``
checks that the correction ran (trl's ``sampling/importance_sampling_ratio`` metrics appear in the log and
equal the ones computed here from the rollout's log-probabilities). With trl's own engine on (``use_vllm``)
it is trl's trainer unchanged.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from trl import GRPOTrainer


class EngineGRPOTrainer(GRPOTrainer):
    """trl's GRPOTrainer with its importance-sampling correction on rollouts a kit engine sampled (module docstring)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # whether trl's correction code runs on the rollout_func's log-probabilities (rollout.correction_on reads it)
        self.engine_correction = not self.use_vllm and bool(self.args.vllm_importance_sampling_correction)
        if (
            self.engine_correction
            and self.loss_type == "vespo"
            and self.vllm_importance_sampling_mode not in ("token_truncate", "token_mask")
        ):
            raise ValueError(
                "the vespo loss needs vllm_importance_sampling_mode token_truncate or token_mask, not "
                f"{self.vllm_importance_sampling_mode!r} (trl's own check)"
            )

    @contextmanager
    def _reading_use_vllm(self, on: bool) -> Iterator[None]:
        saved = self.use_vllm
        self.use_vllm = on
        try:
            yield
        finally:
            self.use_vllm = saved

    def _generate(self, prompts):
        if not self.engine_correction:
            return super()._generate(prompts)
        with self._reading_use_vllm(False):  # no trl engine to sync weights into
            return super()._generate(prompts)

    def _generate_and_score_completions(self, inputs):
        if not self.engine_correction:
            return super()._generate_and_score_completions(inputs)
        with self._reading_use_vllm(True):  # old log-probabilities, the importance ratios and their metrics
            return super()._generate_and_score_completions(inputs)

    def _compute_loss(self, model, inputs):
        if not self.engine_correction:
            return super()._compute_loss(model, inputs)
        with self._reading_use_vllm(True):  # the loss times the importance ratio
            return super()._compute_loss(model, inputs)
