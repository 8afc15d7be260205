"""One module per notebook, named after it (``01_cultural_agents.ipynb`` → ``cultural_agents.py``).

A lesson takes the notebook's :class:`~kit.session.Session` and returns what the notebook shows:
tables, figures (saved through ``Session.figure_paths``) and ``key_numbers(...)``, the dict the
notebook records. Notebooks assemble nothing themselves; lessons assemble the kit's parts and
hold no method logic of their own.
"""
