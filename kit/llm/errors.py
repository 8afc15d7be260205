"""What a backend raises when a model server does not answer usably: one line, credentials scrubbed.

:class:`EndpointError` is one request's (or one server's) failure. :class:`PartialFailure` is a batch in which
some requests failed after their retries while the others were answered: it carries both, so the cache keeps
the answers (:mod:`kit.llm.cached`) and the engine fails only the jobs that asked the failed requests
(:mod:`kit.engine.scheduler`), as it does for a job whose program raises.
"""

from __future__ import annotations

from typing import Any

from kit.run import secrets


class EndpointError(RuntimeError):
    """A request the endpoint did not answer usably: one line, URL first, credentials scrubbed."""

    def __init__(self, line: object = ""):
        super().__init__(secrets.scrub(" ".join(str(line).split())))


class PartialFailure(EndpointError):
    """Some requests of a batch failed: ``answers`` (index -> result) of the others, ``failures``
    (index -> one line) of these, ``total`` requests in the batch."""

    def __init__(self, answers: dict[int, Any], failures: dict[int, str], total: int, note: str = ""):
        self.answers, self.failures, self.total = answers, failures, total
        first = failures[min(failures)]
        if total == 1:
            super().__init__(first)
        else:
            super().__init__(
                f"{len(failures)} of {total} requests failed, {len(answers)} answered{note if answers else ''}; "
                f"the first failure: {first}"
            )
