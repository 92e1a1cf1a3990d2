"""A circuit breaker per backend: fail fast while a backend keeps failing.

After `failures` consecutive failures of the kind that waiting will not fix
(unavailable, timed out), the circuit opens: questions get an immediate
"unavailable" answer for `cooldown` seconds. Then one question is let through
as a probe; its answer's first text closes the circuit (the relay calls
`began` then), its failure opens it again. The relay tells which answer was the
probe (`probe`, noted as `allow` let it through): another answer that fails
meanwhile counts, but the probe's slot stays its own. The run of failures
stands until an answer ends whole (`success`): a probe that begins, then
stalls, opens the circuit again at once. The opening is a WARNING; probes that
fail while the backend stays down are summed up at most once a minute, and its
return is an INFO line.

An answer that ran past a timeout of the backend's own counts: it did not begin
within `first_byte`, or began and then sent nothing more within `idle` (a
backend that hangs after its first words). Where every failure of the run was
one, the backend took the questions: askers are told it is too slow to answer,
not that it is down. An answer cut once its text had begun by what is no fault
of the backend's pace (its connection dropped, `total` passed as its text still
flowed) counts neither way: not a failure (the backend answered), nor a success
that ends a run of them (it did not finish); the relay releases the circuit.

A 429 that names when to call again holds the backend until then: questions
are told when to try again without being sent (each would be refused, and
an API may count the calls it refuses against the key).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable

from bridge.logs import Repeats

log = logging.getLogger("chat_bridge.circuit")


class Circuit:
    """closed -> open (fail fast) -> half-open (one probe) -> closed."""

    def __init__(
        self,
        failures: int = 5,
        cooldown: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
        *,
        name: str = "",
    ) -> None:
        self.name = name
        self.threshold = failures
        self.cooldown = cooldown
        self._clock = clock
        self._failures = 0
        self._opened_at: float | None = None
        # The number of the probe in flight (0: none), of the `_probes` taken so far.
        self._probing = 0
        self._probes = 0
        # A 429's "not before", on `clock`: a wall clock stepped meanwhile (NTP, a
        # VM resumed) neither stretches nor cuts the wait the API asked for.
        self._held_until = -math.inf
        # What the asker is told while the circuit is open, where the last failure
        # said waiting will not help (None: "try again in N s").
        self.told: str | None = None
        # The timeouts of the backend's (`first_byte`, `idle`) the run's answers ran
        # past, where every failure of the run was one (else none): see `slow`.
        self._late: set[str] = set()
        # The run of failures since it opened: the opening told, then failed probes
        # summed up at most once a minute (one every cooldown would bury the rest).
        self._down = Repeats(clock=clock)
        # Requests that had the backend's credentials refused (a 401 or 403), in a row.
        self._refused = Repeats(clock=clock)

    @property
    def state(self) -> str:
        if self._opened_at is None:
            return "closed"
        if self._probing or self._clock() - self._opened_at >= self.cooldown:
            return "half-open"
        return "open"

    @property
    def slow(self) -> bool:
        """Whether every failure of the run was an answer that ran past a timeout of
        the backend's (`first_byte`, `idle`): the backend took the questions, so it is
        not said to be down."""
        return bool(self._late)

    @property
    def probing(self) -> bool:
        """Whether one question is finding out, now, whether the backend is back."""
        return bool(self._probing)

    @property
    def probe(self) -> int:
        """The number of the probe in flight (0: none). A question let through notes
        it at once (it is its own where `allow` gave it the probe slot), and passes it
        to `began`, `failure` and `release`: only the probe's answer closes the
        circuit or frees its slot."""
        return self._probing

    @property
    def refusing(self) -> bool:
        """Whether a question now is told the backend is not being called, without
        taking the probe slot (that is for the first question to reach `allow`)."""
        return self.state == "open" or self.probing or self.held_until() is not None

    def allow(self) -> bool:
        """May a request go to the backend now? (Takes the probe slot when half-open.)
        Not while a 429's wait runs."""
        if self.held_until() is not None:
            return False
        state = self.state
        if state == "closed":
            return True
        if state == "half-open" and not self._probing:
            self._probes += 1
            self._probing = self._probes
            return True
        return False

    def retry_in(self) -> float:
        if self._opened_at is None:
            return 0.0
        return max(0.0, self._opened_at + self.cooldown - self._clock())

    def began(self, *, probe: int = 0) -> None:
        """An answer began; where it is the probe's (`probe`, see the property), every
        question may go to the backend again (not told it is unavailable while that
        answer visibly streams). The run of failures stands until an answer ends
        whole (`success`): one that fails opens the circuit again at once."""
        if probe and probe == self._probing:
            self._probing = 0
            self._opened_at = None

    def success(self) -> None:
        if self._down.tries:  # it had opened
            log.info(
                "backend %s answers again: calling it again",
                self.name,
                extra={"backend": self.name},
            )
            self._down.ended()
        if refused := self._refused.ended():
            log.info(
                "backend %s accepts its API key again, after %d requests refused",
                self.name,
                refused,
                extra={"backend": self.name},
            )
        self._failures = 0
        self._opened_at = None
        self._probing = 0
        self.told = None
        self._late = set()

    def failure(self, told: str | None = None, *, late: str | None = None, probe: int = 0) -> None:
        """A failure waiting may mend; `told`: what the asker is told instead of when
        to try again, where waiting will not (a misconfigured address); `late`: the
        timeout of the backend's its answer ran past, "first_byte" (it did not
        begin) or "idle" (it began, then sent nothing more); `probe`: the number of
        the probe the answer was (see the property). Another answer's failure as a
        probe is under way counts, and waits the cooldown again from now, but
        leaves the probe its slot (its answer tells whether the backend is back)."""
        probing = bool(probe) and probe == self._probing
        # Slow while every failure of the run ran past such a timeout.
        slow = late is not None and (self.slow or self._failures == 0)
        self._late = self._late | {late} if slow and late else set()
        self._failures += 1
        self.told = told
        if probing or self._failures >= self.threshold:
            what = _late_words(self._late) if self.slow else "failed"
            told_as = "slow to answer" if self.slow else "unavailable"
            if not self._down.tries:  # it opens
                self._down.failed()  # the first line of the run
                log.warning(
                    "backend %s %s %d times in a row: not called for %g s (questions "
                    "are told it is %s)",
                    self.name,
                    what,
                    self._failures,
                    self.cooldown,
                    told_as,
                    extra={"backend": self.name},
                )
            elif probing or self._opened_at is None:  # a probe, or what it let through
                again = self._down.failed()
                (log.debug if again is None else log.warning)(
                    "backend %s still %s: a probe failed, %d failures in a row; not called "
                    "for %g s more%s",
                    self.name,
                    "slow" if self.slow else "down",
                    self._failures,
                    self.cooldown,
                    again or "",
                    extra={"backend": self.name},
                )
            self._opened_at = self._clock()
        if probing:
            self._probing = 0

    def refused(self, mend: str) -> None:
        """The backend refused its credentials (a 401 or 403): no wait mends that, so
        it is called as before (the first question answered shows it mended), and
        `mend`, what to set right, is an ERROR the first time, then at most once a
        minute."""
        if (again := self._refused.failed()) is not None:
            log.error("%s%s", mend, again, extra={"backend": self.name})

    def hold(self, retry_at: float) -> None:
        """The backend answered 429 and said when to call it again (epoch seconds):
        not before then."""
        now = self._clock()
        wait = retry_at - time.time()
        if now + wait > max(self._held_until, now):
            log.warning(
                "backend %s is rate limited: not called for %d s (questions are "
                "told when to try again)",
                self.name,
                math.ceil(wait),
                extra={"backend": self.name},
            )
            self._held_until = now + wait

    def held_until(self) -> float | None:
        """When (epoch seconds, by the wall clock now) a 429 said the backend may be
        called again, while that is still ahead."""
        wait = self._held_until - self._clock()
        return time.time() + wait if wait > 0 else None

    def release(self, *, probe: int = 0) -> None:
        """An answer ended without telling anything (e.g. a bad question): where it
        was the probe (`probe`, see the property), its slot is free again."""
        if probe and probe == self._probing:
            self._probing = 0


def _late_words(late: set[str]) -> str:
    """What a run of answers that ran past the backend's timeouts `late` did."""
    if late == {"first_byte"}:
        return "sent no text within its timeouts.first_byte"
    if late == {"idle"}:
        return "stopped mid-answer (nothing more within its timeouts.idle)"
    return "sent no text within its timeouts.first_byte, or stopped past its timeouts.idle,"
