"""The lm-evaluation-harness tasks the kit ships: task YAMLs read by lm-eval's TaskManager and the functions they name
(``agora.py``): MoralChoice low and high ambiguity from the params' data path, and the neutral passages."""
