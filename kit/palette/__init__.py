"""Cultural Palette (unit 1x): the Pentachromatic Cultural Palette data (``synthesis``), continent
agents and the joint model (``agents``), TIES / Model Stock / Cultural MoErges merges (``merges``),
the multi-agent meta agent (``meta_agent``), the Table 1 baselines (``baselines``), the evaluation
(``evaluation``), and every prompt (``prompts``)."""
