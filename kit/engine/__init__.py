"""One engine for every multi-step LLM program: jobs that say what they need, a lock-step scheduler
that serves all jobs of a run with one batch per step, and the bounded generate-parse-retry loop.

```python
from kit.engine import Job, ask, run_jobs
from kit.llm import GenParams

def greet(agent):                      # a program: yields needs, returns a result
    (text,) = yield from ask([(agent.ask("Hello"), GenParams(max_new_tokens=16))])
    return text
jobs = [Job(a.name, greet(a)) for a in agents]
run_jobs(jobs, backend)                # one generate call for all agents
```
"""

from kit.engine.jobs import Job, Need, Program, Reply, ask, choose, embed, score
from kit.engine.retry import Parsed, ask_parsed
from kit.engine.scheduler import TextEmbedder, ready, run, run_jobs, step

__all__ = [
    "Job",
    "Need",
    "Parsed",
    "Program",
    "Reply",
    "TextEmbedder",
    "ask",
    "ask_parsed",
    "choose",
    "embed",
    "ready",
    "run",
    "run_jobs",
    "score",
    "step",
]
