"""Nash Consensus Negotiation, model-free core."""
