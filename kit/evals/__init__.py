"""Evaluations that ask models and hand the answers to the pure metrics of ``kit.metrics``:
survey alignment (``survey``), negotiation traces (``traces``), cultural distance (``distance``)
and capability kept (``capability``). Each sends its requests as one batch per verb."""
