"""One answer per room: when satellites of a room group hear the same words, one final wins.

Two satellites in one kitchen both wake on "turn on the lights" and both send
the utterance; without arbitration Core acts twice. The satellites of a room
group (:class:`~orac_node.wire.RoomGroup`, topics registry) are compared when
their sessions open within the group's window of each other:

- A final whose session has no such peer is published at once: a lone
  satellite never waits.
- A final whose peer is still open waits for the peer's final, at most the
  group's ``wait_ms``; then the finals that say the same words
  (:func:`same_words`) form a cluster. The winner is the satellite that heard
  them best (:func:`winner`); every other member is published rejected as
  ``duplicate`` with ``duplicate_of`` naming the winner's session.
- Different words at the same time (two people, two commands) are both
  published.
- A final whose same-words peer was already published (the peer had no open
  peer when it ended, or its wait ran out) is the duplicate of that one: the
  words were already acted on.

Only live sessions take part (satellites and Wyoming clients); files and
Core's requests are never arbitrated. This module holds no I/O: the pipeline
tells it when a session opened (:meth:`Arbiter.opened`) and hands it each
final before publishing (:meth:`Arbiter.settle`), which returns the final to
publish.
"""

from __future__ import annotations

import asyncio
import dataclasses
import difflib
import logging
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from orac_node.ingest.session import UtteranceKey
from orac_node.wire import DUPLICATE, Final, RoomGroup

log = logging.getLogger(__name__)

SAME_WORDS_RATIO = 0.75
"""Two transcripts whose words match at least this well (2 x matched words / all
words) are the same words. Two satellites hearing one command decode it with at
most a slip or two ("light" / "lights"; "on" / "off" in five words is 0.8, a
mishearing the better satellite settles). Measured over every pair of
different texts: the shared commands' references score at most 0.67; the
node's finals of the 60 real orders, all one shape, at most 0.75, so the
closest pair of different orders would count as the same words ("a light roast
single shot drip coffee" / "a light rose triple shot ice coffee" is 0.7)."""
SIMILAR_WORD_RATIO = 0.75
"""Two words at least this alike letter by letter (difflib's ratio) match as one:
"light" / "lights" (0.91) and "stairs" / "tears" do, "ten" / "two" (0.33) and
"roast" / "rose" (0.67) do not."""
CONTAINED_MIN_WORDS = 3
"""A transcript of at least this many words found whole inside another is the
same words: one satellite heard the end cut off, or whisper repeated a phrase.
Shorter ones ("yes", "stop it") are too common inside other sentences."""
SNR_TOLERANCE_DB = 3.0
"""Signal-to-noise ratios this close count as equal (a satellite's own
fan or mic noise moves it by a dB or two): the level decides then."""
LEVEL_TOLERANCE_DB = 1.0
"""Speech levels this close count as equal: the confidence decides then."""
KEEP_S = 120.0
"""How long a decided session is remembered, so that a peer whose final comes
later (a long utterance, a slow decode) is still compared with it."""
STALE_S = 900.0
"""A session without a final after this long is forgotten (it cannot happen
while the pipeline owes every session a final; this bounds memory if it did)."""

Groups = Callable[[str], tuple[str, RoomGroup] | None]
"""A device's room group and its name (Registry.room_group)."""


@dataclass(slots=True)
class _Entry:
    """One session of a room group, from its first audio to a while after its verdict."""

    key: UtteranceKey
    group: str
    window_s: float
    wait_s: float
    opened_at: float
    final: Final | None = None
    submitted_at: float = 0.0
    deadline: float = 0.0
    verdict: Final | None = None
    decided_at: float = 0.0
    waiters: list[asyncio.Future[Final]] = field(default_factory=list)


def normalize(text: str) -> str:
    """Lower case, letters and digits only, single spaces: what 'the same words' compares.

    Apostrophes go without a space ("I'd" is one word); other punctuation splits.
    """
    joined = re.sub(r"['\u2019]", "", text.lower())
    return " ".join(re.sub(r"[^\w\s]", " ", joined).split())


def same_words(a: str, b: str) -> bool:
    """Whether two transcripts say the same thing.

    Compared word by word, not letter by letter: commands of one shape differ
    in a word or two, and a letter-level ratio puts "single shot drip coffee"
    and "triple shot ice coffee" at 0.85.
    """
    left, right = normalize(a).split(), normalize(b).split()
    if not left or not right:
        return False
    matched = _matched_words(left, right)
    shorter = min(len(left), len(right))
    if shorter >= CONTAINED_MIN_WORDS and matched == shorter:
        return True
    return 2 * matched / (len(left) + len(right)) >= SAME_WORDS_RATIO


def _matched_words(left: list[str], right: list[str]) -> int:
    """Words of ``left`` aligned with an equal or a letter-alike word of ``right``."""
    matched = 0
    matcher = difflib.SequenceMatcher(None, left, right, autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            matched += i2 - i1
        elif tag == "replace":
            matched += sum(
                difflib.SequenceMatcher(None, x, y, autojunk=False).ratio() >= SIMILAR_WORD_RATIO
                for x, y in zip(left[i1:i2], right[j1:j2], strict=False)
            )
    return matched


def winner(finals: Sequence[Final]) -> Final:
    """The final of the satellite that heard the words best.

    Highest signal-to-noise ratio first (the nearest satellite hears the
    speaker furthest above the room), within :data:`SNR_TOLERANCE_DB`; among
    those the loudest speech, within :data:`LEVEL_TOLERANCE_DB`; then the
    highest confidence; then the first in ``finals`` (the earliest session).
    A final without a level (under 40 ms of audio) ranks last.
    """
    best_snr = max(_db(f.snr_db) for f in finals)
    pool = [f for f in finals if _db(f.snr_db) >= best_snr - SNR_TOLERANCE_DB]
    best_level = max(_db(f.level_db) for f in pool)
    pool = [f for f in pool if _db(f.level_db) >= best_level - LEVEL_TOLERANCE_DB]
    return max(pool, key=lambda f: f.confidence)  # max keeps the first of equals


def _db(value: float | None) -> float:
    return float("-inf") if value is None else value


def duplicate(final: Final, of: Final) -> Final:
    """``final`` rejected as a duplicate of ``of`` (no text, as every rejected final)."""
    return dataclasses.replace(
        final,
        text="",
        rejected=DUPLICATE,
        reason=DUPLICATE,
        words=[],
        segments=[],
        wake_word=None,
        duplicate_of=of.session,
    )


class Arbiter:
    """The room groups' open sessions and the verdicts on their finals."""

    def __init__(self, groups: Groups, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._groups = groups
        self._clock = clock
        self._entries: dict[UtteranceKey, _Entry] = {}
        self._by_group: dict[str, list[_Entry]] = {}
        self.duplicates = 0  # finals rejected as duplicates
        self.waited = 0  # finals that waited for a peer

    def opened(self, key: UtteranceKey, opened_at: float) -> None:
        """A live session has audio (since ``opened_at``): remember it if its device is in a group.

        Called for every chunk; costs two dict lookups for a device in no group.
        """
        if key in self._entries:
            return
        found = self._groups(key.device)
        if found is None:
            return
        name, group = found
        entry = _Entry(key, name, group.window_ms / 1000, group.wait_ms / 1000, opened_at)
        self._entries[key] = entry
        self._by_group.setdefault(name, []).append(entry)
        self._prune(name)

    async def settle(self, final: Final) -> Final:
        """The final to publish for a session: itself, or a duplicate of a peer's.

        Returns at once unless another session of the room group, opened
        within the window, has not ended yet.
        """
        entry = self._entries.get(UtteranceKey(final.device, final.session))
        if entry is None or entry.verdict is not None:
            return final
        entry.final = final
        entry.submitted_at = self._clock()
        entry.deadline = entry.submitted_at + entry.wait_s
        self._resolve(entry.group)
        if entry.verdict is not None:
            return entry.verdict
        self.waited += 1
        waiter: asyncio.Future[Final] = asyncio.get_running_loop().create_future()
        entry.waiters.append(waiter)
        handle = asyncio.get_running_loop().call_later(entry.wait_s, self._time_up, entry)
        try:
            return await waiter
        finally:
            handle.cancel()

    # -- verdicts -------------------------------------------------------------

    def _time_up(self, entry: _Entry) -> None:
        """``entry`` waited ``wait_s``: it is decided now, whatever its peers are doing.

        Its deadline is set to now rather than compared with the clock: the event
        loop may run a timer a little before the clock reaches its time.
        """
        entry.deadline = min(entry.deadline, self._clock())
        self._resolve(entry.group)

    def _peers(self, entry: _Entry) -> list[_Entry]:
        """Sessions of other satellites of the group opened within the window of ``entry``."""
        return [
            other
            for other in self._by_group.get(entry.group, ())
            if other.key.device != entry.key.device
            and abs(other.opened_at - entry.opened_at) <= entry.window_s
        ]

    def _resolve(self, group: str) -> None:
        """Give a verdict to every final of ``group`` that need not (or may no longer) wait."""
        now = self._clock()
        for entry in self._by_group.get(group, ()):
            final = entry.final
            if final is None or entry.verdict is not None:
                continue
            if final.rejected is not None or not final.text:
                self._decide(entry, final, now)  # nothing heard: nothing to compare
                continue
            peers = self._peers(entry)
            if any(peer.final is None for peer in peers) and now < entry.deadline:
                continue  # a peer may still say the same words
            same = [
                peer
                for peer in peers
                if peer.final is not None
                and peer.final.rejected is None
                and same_words(peer.final.text, final.text)
            ]
            won = next(
                (p.verdict for p in same if p.verdict is not None and p.verdict.rejected is None),
                None,
            )
            if won is not None:  # the words were already acted on
                self._decide(entry, duplicate(final, won), now)
                continue
            cluster = [entry, *(peer for peer in same if peer.verdict is None)]
            cluster.sort(key=lambda member: member.opened_at)
            best = winner([member.final for member in cluster if member.final is not None])
            for member in cluster:
                assert member.final is not None
                verdict = member.final if member.final is best else duplicate(member.final, best)
                self._decide(member, verdict, now)

    def _decide(self, entry: _Entry, verdict: Final, now: float) -> None:
        """Hand ``entry`` its verdict; its latency then includes the time it waited."""
        waited_ms = (now - entry.submitted_at) * 1000
        if waited_ms >= 0.05:
            verdict = dataclasses.replace(
                verdict, latency_ms=round(verdict.latency_ms + waited_ms, 1)
            )
        entry.verdict = verdict
        entry.decided_at = now
        if verdict.rejected == DUPLICATE:
            self.duplicates += 1
            log.info(
                "final %s/%s is a duplicate of %s (room group %s)",
                verdict.device,
                verdict.session,
                verdict.duplicate_of,
                entry.group,
                extra=entry.key.log_fields(),
            )
        for waiter in entry.waiters:
            if not waiter.done():
                waiter.set_result(verdict)
        entry.waiters.clear()

    def _prune(self, group: str) -> None:
        """Forget sessions decided :data:`KEEP_S` ago, or open for :data:`STALE_S`."""
        now = self._clock()
        entries = self._by_group.get(group, [])
        kept: list[_Entry] = []
        for entry in entries:
            if entry.verdict is None:
                keep = now - entry.opened_at < STALE_S
            else:
                keep = now - entry.decided_at < KEEP_S
            if keep:
                kept.append(entry)
            else:
                self._entries.pop(entry.key, None)
        self._by_group[group] = kept
