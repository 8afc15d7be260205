"""VISA: change which values a text expresses, toward a target, while keeping its meaning.

A separate LoRA rewriter edits what the base model wrote, so the base weights never change
("shielded"). The parts, each in its own module:

- ``corpus``: the texts (base answers to train-split GlobalOpinionQA questions and MoralChoice
  dilemmas), split by text id into train and held-out;
- ``targets``: target value vectors per text, derived from (seed, text id), and culture profiles;
- ``translator``: natural-language value instruction ↔ target vector;
- ``rewards``: the GRPO reward functions, registered by name;
- ``rewriter``: the rewriter's prompt, GRPO training and the two trained baselines (best-of-n SFT,
  direct DPO finetuning of the answering model);
- ``evaluation``: rewrites of held-out texts per method and the table with bootstrap intervals.

The trained value detector lives with the other detectors, in ``kit.values.trained``.
"""
