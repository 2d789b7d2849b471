"""Sampler rollout: a feature flag that splits requests between samplers by fixed shares.

``Rollout.parse("aks=0.9,bolt=0.1")`` sends 90 % of request keys to AKS and 10 % to BOLT. The
arm is a pure function of the request key (a user id, a session id; by default the video and
the question), so a user stays on one arm across requests, processes and replicas, and the
split needs no shared state:

    u = BLAKE2b-64(salt + "\\0" + key) / 2**64           # uniform on [0, 1)
    arm = the first arm whose cumulative share exceeds u  # arms in the order given

Because the arms keep their order on the unit interval, growing the last arm's share only
moves keys from the arms before it *into* it: ``aks=0.9,bolt=0.1`` -> ``aks=0.8,bolt=0.2``
keeps every BOLT user on BOLT. Reordering the arms or changing the salt reshuffles everyone
(a fresh experiment). A request that names its sampler is not in the rollout.

Example::

    rollout = Rollout.parse("aks=0.9,bolt=0.1")
    rollout.assign("user-42")        # "aks" (always, for this key)
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from dataclasses import dataclass

from framedex.errors import ConfigError, check
from framedex.query.samplers.base import create_sampler

#: Salt of the hash (change it to start a new, independent split).
DEFAULT_SALT = "framedex-rollout"
#: How far from 1 the shares may sum (they are written by hand: 0.9 + 0.1).
SHARE_TOLERANCE = 1e-6


@dataclass(frozen=True)
class Rollout:
    """Arms ``(sampler, share)`` in order, shares summing to 1, and the hash salt."""

    arms: tuple[tuple[str, float], ...]
    salt: str = DEFAULT_SALT

    def __post_init__(self) -> None:
        check(len(self.arms) >= 1, "rollout", self.text, "needs at least one arm, e.g. "
              "aks=0.9,bolt=0.1")
        names = [n for n, _ in self.arms]
        check(len(set(names)) == len(names), "rollout", self.text, "names a sampler twice")
        for name, share in self.arms:
            create_sampler(name)  # an unknown name fails now, listing the known ones
            check(isinstance(share, (int, float)) and not isinstance(share, bool)
                  and math.isfinite(share) and 0 < share <= 1, "rollout", self.text,
                  f"the share of {name} must be a number in (0, 1]")
        total = sum(s for _, s in self.arms)
        check(abs(total - 1.0) <= SHARE_TOLERANCE, "rollout", self.text,
              f"the shares must sum to 1 (they sum to {total:g})")
        check(isinstance(self.salt, str) and self.salt != "", "salt", self.salt,
              "must be non-empty text")

    @classmethod
    def parse(cls, spec: str | Mapping[str, float] | Rollout) -> Rollout:
        """A rollout from ``"aks=0.9,bolt=0.1"``, a ``{sampler: share}`` mapping (in its
        order) or a Rollout.

        Raises:
            ConfigError: malformed text, shares that are not numbers in (0, 1] or do not sum
            to 1, a sampler named twice. UnknownNameError: an unknown sampler.
        """
        if isinstance(spec, Rollout):
            return spec
        if isinstance(spec, Mapping):
            return cls(tuple((str(k), v) for k, v in spec.items()))
        check(isinstance(spec, str) and spec.strip() != "", "rollout", spec,
              "must be SAMPLER=SHARE pairs, e.g. aks=0.9,bolt=0.1")
        arms = []
        for part in spec.split(","):
            name, sep, share = part.partition("=")
            if not sep or not name.strip():
                raise ConfigError(f"rollout={spec!r} is invalid: {part.strip()!r} is not "
                                  "SAMPLER=SHARE (e.g. aks=0.9,bolt=0.1)")
            try:
                value = float(share)
            except ValueError:
                raise ConfigError(f"rollout={spec!r} is invalid: the share of "
                                  f"{name.strip()} must be a number, not {share!r}") from None
            arms.append((name.strip(), value))
        return cls(tuple(arms))

    @property
    def text(self) -> str:
        """The rollout as ``aks=0.9,bolt=0.1``."""
        return ",".join(f"{n}={s:g}" if isinstance(s, (int, float)) else f"{n}={s!r}"
                        for n, s in self.arms)

    @property
    def samplers(self) -> list[str]:
        """The arms' sampler names, in order."""
        return [n for n, _ in self.arms]

    def unit(self, key: str) -> float:
        """Where ``key`` falls on [0, 1): the first 8 bytes of its salted BLAKE2b hash."""
        digest = hashlib.blake2b(f"{self.salt}\0{key}".encode(), digest_size=8).digest()
        return int.from_bytes(digest, "big") / 2.0 ** 64

    def assign(self, key: str) -> str:
        """The arm (sampler name) of a request key: the same key always gets the same arm.

        Raises:
            ConfigError: an empty key.
        """
        check(isinstance(key, str) and key != "", "rollout_key", key, "must be non-empty text")
        u = self.unit(key)
        edge = 0.0
        for name, share in self.arms:
            edge += share
            if u < edge:
                return name
        return self.arms[-1][0]  # the shares' rounding left a sliver below 1


__all__ = ["DEFAULT_SALT", "Rollout"]
