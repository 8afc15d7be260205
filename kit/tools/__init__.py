"""Tooling: the ``python -m kit`` command line, the machine check, JupyterLab, the GPU stack's versions."""
