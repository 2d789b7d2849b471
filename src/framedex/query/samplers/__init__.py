"""Frame samplers: pick the K frames of a video that carry the evidence for a question.

Importing this package registers every built-in sampler (one module each, import order does
not matter) through the same ``@register_sampler`` decorator a third party would use; helpers
they share live in ``_common.py``.
"""

from __future__ import annotations

from framedex.query.samplers import adard_key as adard_key
from framedex.query.samplers import aks as aks
from framedex.query.samplers import bolt as bolt
from framedex.query.samplers import focus as focus
from framedex.query.samplers import fps as fps
from framedex.query.samplers import mmr as mmr
from framedex.query.samplers import qframe as qframe
from framedex.query.samplers import router as router
from framedex.query.samplers import shots as shots
from framedex.query.samplers import topk as topk
from framedex.query.samplers import uniform as uniform
from framedex.query.samplers import vilamp as vilamp
from framedex.query.samplers.base import TIERS as TIERS
from framedex.query.samplers.base import Budget as Budget
from framedex.query.samplers.base import Sampler as Sampler
from framedex.query.samplers.base import SelectContext as SelectContext
from framedex.query.samplers.base import Selection as Selection
from framedex.query.samplers.base import TokenBudget as TokenBudget
from framedex.query.samplers.base import create_sampler as create_sampler
from framedex.query.samplers.base import list_samplers as list_samplers
from framedex.query.samplers.base import register_sampler as register_sampler
