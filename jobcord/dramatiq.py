"""The dramatiq bridge, by its short name: ``from jobcord.dramatiq import JobcordMiddleware``.

See ``jobcord.producers.dramatiq`` (call jobs from actors, jobs as actors, completions as messages)
and the README section "dramatiq: GPU jobs from your actors".
"""

from jobcord.producers.dramatiq import JobcordMiddleware, actor
from jobcord.producers.message_calls import BridgeMissing
from jobcord.producers.options import CompletionTarget

__all__ = ["BridgeMissing", "CompletionTarget", "JobcordMiddleware", "actor"]
