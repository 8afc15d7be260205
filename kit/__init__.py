"""Agora: a notebook-first kit for pluralistic and cross-cultural LLM alignment research."""

__version__ = "0.1.0"

import warnings

# tqdm.auto warns in a kernel without ipywidgets (an environment set up without the kit's extras);
# the bars fall back to text, which is all a headless run shows anyway.
warnings.filterwarnings("ignore", message="IProgress not found")
# peft still calls a transformers attribute renamed in v5; the warning says nothing to kit users.
warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
