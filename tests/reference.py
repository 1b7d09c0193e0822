"""Independent reference implementation of the build-telemetry metrics.

Used only by tests as a second route to the numbers.  It is written straight
from the specification and deliberately shares no code with ``telemetry``.
Standard library only.

Design notes
------------
* All derived quantities are computed with exact rational arithmetic
  (``fractions.Fraction``) from integer milliseconds and integer counts, and
  only converted to ``float`` at the API boundary.  Classification decisions
  (trend thresholds, regression threshold, bottleneck ties) are therefore
  mathematically exact, with no floating-point boundary noise.
* The reference only needs to handle valid input: anything malformed raises
  ``ValueError`` instead of being skipped.
* A build with no target_finished event at all (a tool that reports none) has
  no rates: each is ``None``, left out of the means and of the cache trend.
  A build whose targets were all skipped does have them (hit rate 0).

API
---
parse_events(lines) -> list[dict]
sessions_from_events(events) -> list[RefSession]      (ordered by start)
summary(sessions, threshold=1.5) -> dict
summary_text(sessions, threshold=1.5, top=5) -> str
bottlenecks(sessions) -> list[(label, mean_ms)]
top_bottlenecks(session, n=3) -> list[(label, mean_ms)]
trend(values) -> "Increasing" | "Decreasing" | "Stable"
regressions(sessions, threshold=1.5) -> list[(id, start_ms, ratio, expected_ms, actual_ms)]
parse_ts(value) -> int   (epoch milliseconds)
format_duration(ms) -> str   ("2.3s" / "45ms")
format_utc(ms) -> str        ("YYYY-MM-DDTHH:MM:SS")
"""

from __future__ import annotations

import json
import math
import re
import sys
from collections import defaultdict, deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from fractions import Fraction
from typing import Any

EVENT_TYPES = ("build_started", "target_started", "target_finished", "build_finished")
STATUSES = ("built", "cached", "failed", "skipped")
EXECUTED = ("built", "failed")

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

# RFC 3339 date-time: full-date "T" full-time, with mandatory offset (Z or +-HH:MM).
_RFC3339 = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(\.\d+)?"
    r"([Zz]|[+-]\d{2}:\d{2})$"
)


# --------------------------------------------------------------------------
# Parsing / validation
# --------------------------------------------------------------------------


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def parse_ts(value: Any) -> int:
    """Normalise a ts (epoch ms number or RFC 3339 string) to integer ms.

    Numbers are rounded with Python ``round()`` (half to even on the exact
    binary value).  Strings are converted exactly (Fraction of ms, any number
    of fractional-second digits) and then rounded with ``round()``.
    """
    if _is_number(value):
        return round(value)
    if isinstance(value, str):
        m = _RFC3339.match(value)
        if not m:
            raise ValueError(f"bad timestamp string: {value!r}")
        y, mo, d, hh, mi, ss = (int(g) for g in m.groups()[:6])
        frac, off = m.group(7), m.group(8)
        if off in ("Z", "z"):
            tz = UTC
        else:
            sign = 1 if off[0] == "+" else -1
            oh, om = int(off[1:3]), int(off[4:6])
            if oh > 23 or om > 59:
                raise ValueError(f"bad offset: {value!r}")
            tz = timezone(sign * timedelta(hours=oh, minutes=om))
        dt = datetime(y, mo, d, hh, mi, ss, tzinfo=tz)  # raises on bad fields
        delta = dt - _EPOCH
        whole_ms = (delta.days * 86400 + delta.seconds) * 1000  # microseconds == 0
        frac_ms = Fraction(frac[1:]) / (10 ** (len(frac) - 1)) * 1000 if frac else 0
        return round(whole_ms + frac_ms)
    raise ValueError(f"bad timestamp: {value!r}")


def _opt(obj: dict, key: str) -> Any:
    """Optional field: absent or JSON null both mean 'not given'."""
    return obj.get(key)


def validate_event(obj: Any) -> dict:
    """Validate one decoded JSON value; return a normalised event dict.

    The returned dict has ``ts`` normalised to int ms (and ``duration_ms``
    rounded to int ms when present).  Raises ValueError when invalid.
    """
    if not isinstance(obj, dict):
        raise ValueError("event is not a JSON object")
    ev = obj.get("event")
    if ev not in EVENT_TYPES:
        raise ValueError(f"unknown event: {ev!r}")
    sess = obj.get("session")
    if not isinstance(sess, str) or not sess:
        raise ValueError("missing/invalid session")
    if "ts" not in obj:
        raise ValueError("missing ts")
    out = dict(obj)
    out["ts"] = parse_ts(obj["ts"])

    if ev == "build_started":
        par = _opt(obj, "parallelism")
        if par is not None and (not _is_int(par) or par < 1):
            raise ValueError(f"invalid parallelism: {par!r}")
        for key in ("tool", "host", "commit", "branch"):
            v = _opt(obj, key)
            if v is not None and not isinstance(v, str):
                raise ValueError(f"invalid {key}: {v!r}")
        labels = _opt(obj, "labels")
        if labels is not None and not isinstance(labels, dict):
            raise ValueError(f"invalid labels: {labels!r}")
    elif ev in ("target_started", "target_finished"):
        tgt = obj.get("target")
        if not isinstance(tgt, str) or not tgt:
            raise ValueError("missing/invalid target")
        if ev == "target_started":
            w = _opt(obj, "worker")
            if w is not None and (not _is_int(w) or w < 0):
                raise ValueError(f"invalid worker: {w!r}")
        else:
            if obj.get("status") not in STATUSES:
                raise ValueError(f"invalid status: {obj.get('status')!r}")
            dur = _opt(obj, "duration_ms")
            if dur is not None:
                if not _is_number(dur) or dur < 0:
                    raise ValueError(f"invalid duration_ms: {dur!r}")
                out["duration_ms"] = round(dur)
    else:  # build_finished
        if not isinstance(obj.get("success"), bool):
            raise ValueError("missing/invalid success")
        err = _opt(obj, "error")
        if err is not None and not isinstance(err, str):
            raise ValueError(f"invalid error: {err!r}")
    return out


def _reject_constant(name: str) -> Any:
    raise ValueError(f"non-standard JSON constant {name}")


def parse_events(lines: Iterable[str]) -> list[dict]:
    """Parse JSON Lines; skip blank lines; raise ValueError on a bad line."""
    events = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line, parse_constant=_reject_constant)
            events.append(validate_event(obj))
        except ValueError as exc:  # json.JSONDecodeError is a ValueError
            raise ValueError(f"line {n}: {exc}") from exc
    return events


# --------------------------------------------------------------------------
# Sessions
# --------------------------------------------------------------------------


@dataclass
class RefSession:
    session_id: str
    start_ms: int
    end_ms: int
    duration_ms: int
    built: int
    cached: int
    failed: int
    skipped: int
    total_targets: int
    cache_hit_rate: float | None  # None: the build reported no targets
    parallelism_utilization: float | None
    targets_per_second: float | None
    succeeded: bool
    interrupted: bool
    error: str | None
    labels: dict
    executed_runs: list  # [(target, duration_ms)] in stream order of target_finished
    # --- extras (not part of the required field list) ---
    parallelism: int | None = None  # as given on build_started
    effective_parallelism: int = 0  # given, or peak concurrency of executed runs
    peak_concurrency: int = 0  # always computed
    executed_intervals: list = field(default_factory=list)  # [(target, start, end)]
    tool: str | None = None
    host: str | None = None
    commit: str | None = None
    branch: str | None = None

    # exact values (Fractions) used by the aggregation functions; None = unknown
    def reported_targets(self) -> bool:
        return self.built + self.cached + self.failed + self.skipped > 0

    def exact_cache_hit_rate(self) -> Fraction | None:
        if not self.reported_targets():
            return None
        den = self.built + self.cached + self.failed
        return Fraction(100 * self.cached, den) if den else Fraction(0)

    def exact_utilization(self) -> Fraction | None:
        if not self.reported_targets():
            return None
        den = self.duration_ms * self.effective_parallelism
        num = 100 * sum(d for _, d in self.executed_runs)
        return Fraction(num, den) if den else Fraction(0)

    def exact_targets_per_second(self) -> Fraction | None:
        if not self.reported_targets():
            return None
        if self.duration_ms == 0:
            return Fraction(0)
        return Fraction(1000 * self.total_targets, self.duration_ms)


def peak_concurrency(intervals: Iterable[tuple[int, int]]) -> int:
    """Max number of half-open intervals [s, e) covering a common instant.

    Touching intervals do not overlap; zero-length intervals count for nothing.
    """
    points = []
    for s, e in intervals:
        if e > s:
            points.append((s, 1))
            points.append((e, -1))
    points.sort()  # at equal time, -1 (end) sorts before +1 (start)
    cur = peak = 0
    for _, d in points:
        cur += d
        peak = max(peak, cur)
    return peak


def _build_session(sid: str, evs: list[dict]) -> RefSession:
    starts = [e for e in evs if e["event"] == "build_started"]
    finishes = [e for e in evs if e["event"] == "build_finished"]
    if len(starts) != 1:
        raise ValueError(f"session {sid!r}: expected exactly one build_started, got {len(starts)}")
    if len(finishes) > 1:
        raise ValueError(f"session {sid!r}: more than one build_finished")
    bs = starts[0]
    start_ms = bs["ts"]

    pending: dict[str, deque] = defaultdict(deque)  # target -> FIFO of start ts
    counts = dict.fromkeys(STATUSES, 0)
    executed_runs: list[tuple[str, int]] = []
    executed_intervals: list[tuple[str, int, int]] = []
    for e in evs:  # stream order
        if e["event"] == "target_started":
            pending[e["target"]].append(e["ts"])
        elif e["event"] == "target_finished":
            tgt, ts, status = e["target"], e["ts"], e["status"]
            started = pending[tgt].popleft() if pending[tgt] else None
            if e.get("duration_ms") is not None:
                dur = e["duration_ms"]
                run = (ts - dur, ts)
            elif started is not None:
                dur = ts - started
                if dur < 0:
                    raise ValueError(f"session {sid!r}: target {tgt!r} finished before it started")
                run = (started, ts)
            else:
                dur = 0
                run = (ts, ts)
            counts[status] += 1
            if status in EXECUTED:
                executed_runs.append((tgt, dur))
                executed_intervals.append((tgt, run[0], run[1]))

    if finishes:
        bf = finishes[0]
        end_ms = bf["ts"]
        succeeded = bf["success"]
        error = bf.get("error")
        interrupted = False
    else:
        end_ms = max(e["ts"] for e in evs)
        succeeded = False
        error = None
        interrupted = True
    duration = end_ms - start_ms
    if duration < 0:
        raise ValueError(f"session {sid!r}: negative build duration")

    peak = peak_concurrency((s, f) for _, s, f in executed_intervals)
    par = bs.get("parallelism")
    eff_par = par if par is not None else peak
    total = sum(counts.values())

    s = RefSession(
        session_id=sid,
        start_ms=start_ms,
        end_ms=end_ms,
        duration_ms=duration,
        built=counts["built"],
        cached=counts["cached"],
        failed=counts["failed"],
        skipped=counts["skipped"],
        total_targets=total,
        cache_hit_rate=0.0,
        parallelism_utilization=0.0,
        targets_per_second=0.0,
        succeeded=succeeded,
        interrupted=interrupted,
        error=error,
        labels=dict(bs.get("labels") or {}),
        executed_runs=executed_runs,
        parallelism=par,
        effective_parallelism=eff_par,
        peak_concurrency=peak,
        executed_intervals=executed_intervals,
        tool=bs.get("tool"),
        host=bs.get("host"),
        commit=bs.get("commit"),
        branch=bs.get("branch"),
    )
    s.cache_hit_rate = _float_or_none(s.exact_cache_hit_rate())
    s.parallelism_utilization = _float_or_none(s.exact_utilization())
    s.targets_per_second = _float_or_none(s.exact_targets_per_second())
    return s


def _float_or_none(value: Fraction | None) -> float | None:
    return None if value is None else float(value)


def _order(sessions: Iterable[RefSession]) -> list[RefSession]:
    return sorted(sessions, key=lambda s: (s.start_ms, s.session_id))


def sessions_from_events(events: Iterable[dict]) -> list[RefSession]:
    """Group (already parsed) events by session and derive per-session metrics.

    Accepts raw dicts too: each is (re)validated/normalised.  Ordered by
    (start_ms, session_id).
    """
    groups: dict[str, list[dict]] = {}
    for e in events:
        e = validate_event(e)
        groups.setdefault(e["session"], []).append(e)
    return _order(_build_session(sid, evs) for sid, evs in groups.items())


def sessions_from_lines(lines: Iterable[str]) -> list[RefSession]:
    return sessions_from_events(parse_events(lines))


# --------------------------------------------------------------------------
# Across sessions
# --------------------------------------------------------------------------


def _mean(values: list) -> Fraction:
    return Fraction(sum(values, Fraction(0)), len(values)) if values else Fraction(0)


def _known(values: list[Fraction | None]) -> list[Fraction]:
    """The values that are not None, in their order."""
    return [v for v in values if v is not None]


def _mean_known(values: list[Fraction | None]) -> float | None:
    """Mean of the known values; None when no value is known."""
    known = _known(values)
    return float(_mean(known)) if known else None


def trend(values: list) -> str:
    """Older floor(n/2) vs newer rest; +-10% relative change of means."""
    n = len(values)
    if n < 2:
        return "Stable"
    h = n // 2
    old, new = _mean(list(values[:h])), _mean(list(values[h:]))
    if old == 0:
        return "Stable"
    change = (new - old) / old
    if change > Fraction(1, 10):
        return "Increasing"
    if change < Fraction(-1, 10):
        return "Decreasing"
    return "Stable"


def _bottlenecks_exact(runs: Iterable[tuple[str, int]]) -> list[tuple[str, Fraction]]:
    acc: dict[str, list[int]] = defaultdict(list)
    for tgt, dur in runs:
        acc[tgt].append(dur)
    ranked = [(t, Fraction(sum(d), len(d))) for t, d in acc.items()]
    ranked.sort(key=lambda x: (-x[1], x[0]))
    return ranked


def bottlenecks(sessions: Iterable[RefSession]) -> list[tuple[str, float]]:
    """Per target label, mean duration of executed runs across the window."""
    runs = [r for s in sessions for r in s.executed_runs]
    return [(t, float(m)) for t, m in _bottlenecks_exact(runs)]


def top_bottlenecks(session: RefSession, n: int = 3) -> list[tuple[str, float]]:
    """One build's executed targets by (mean) duration descending, ties by label."""
    return [(t, float(m)) for t, m in _bottlenecks_exact(session.executed_runs)[:n]]


def _regressions_exact(sessions: list[RefSession], threshold) -> list[tuple]:
    ordered = _order(sessions)
    n = len(ordered)
    # floats are taken at their shortest decimal repr (1.1 means 11/10)
    thr = Fraction(repr(threshold)) if isinstance(threshold, float) else Fraction(threshold)
    recent = 3 if n >= 10 else 1
    out = []
    for i in range(max(1, n - recent), n):
        expected = _mean([s.duration_ms for s in ordered[:i]])
        if expected == 0:
            continue
        s = ordered[i]
        ratio = Fraction(s.duration_ms) / expected
        if ratio >= thr:
            out.append((s.session_id, s.start_ms, ratio, expected, s.duration_ms))
    return out


def regressions(sessions: Iterable[RefSession], threshold: float = 1.5) -> list[tuple]:
    return [
        (sid, st, float(r), float(e), a)
        for sid, st, r, e, a in _regressions_exact(list(sessions), threshold)
    ]


def summary(sessions: Iterable[RefSession], threshold: float = 1.5) -> dict:
    ss = _order(sessions)
    n = len(ss)
    successful = sum(1 for s in ss if s.succeeded)
    durations = [s.duration_ms for s in ss]
    chr_: list[Fraction | None] = [s.exact_cache_hit_rate() for s in ss]
    return {
        "total": n,
        "successful": successful,
        "failed": n - successful,
        "success_pct": float(Fraction(100 * successful, n)) if n else 0.0,
        "avg_duration_ms": float(_mean(durations)),
        "min_duration_ms": min(durations) if durations else 0,
        "max_duration_ms": max(durations) if durations else 0,
        # builds whose rates are known (they reported at least one target)
        "rated_builds": sum(1 for s in ss if s.reported_targets()),
        "avg_cache_hit_rate": _mean_known(chr_),
        "cache_trend": trend(_known(chr_)),
        "avg_utilization": _mean_known([s.exact_utilization() for s in ss]),
        "avg_targets_per_second": _mean_known([s.exact_targets_per_second() for s in ss]),
        "bottlenecks": bottlenecks(ss),
        "duration_trend": trend(durations),
        "regressions": regressions(ss, threshold),
    }


def format_duration(ms) -> str:
    """>= 100 ms: seconds '.1f' + 's'; otherwise integer ms '.0f' + 'ms'."""
    if ms >= 100:
        return f"{float(Fraction(ms) / 1000):.1f}s"
    return f"{float(ms):.0f}ms"


def format_utc(ms: int) -> str:
    """UTC 'YYYY-MM-DDTHH:MM:SS' (milliseconds truncated toward the past)."""
    return (_EPOCH + timedelta(milliseconds=ms)).strftime("%Y-%m-%dT%H:%M:%S")


def _average_line(name: str, value: float | None, digits: int, unit: str, s: dict[str, Any]) -> str:
    """'  Name: 78.3%', with ' (over K of N builds)' when only K of the N builds
    reported targets, or '  Name: n/a' when none did."""
    if value is None:
        return f"  {name}: n/a"
    line = f"  {name}: {value:.{digits}f}{unit}"
    if s["rated_builds"] != s["total"]:
        line += f" (over {s['rated_builds']} of {s['total']} builds)"
    return line


def summary_text(sessions: Iterable[RefSession], threshold: float = 1.5, top: int = 5) -> str:
    ss = _order(sessions)
    s = summary(ss, threshold)
    lines = [
        "=== Build Telemetry Summary ===",
        "",
        f"Total Builds: {s['total']}",
        f"Successful: {s['successful']} ({s['success_pct']:.1f}%)",
        f"Failed: {s['failed']}",
        "",
        "Performance Metrics:",
        f"  Average Build Time: {s['avg_duration_ms']:.0f} ms",
        f"  Fastest Build: {s['min_duration_ms']:.0f} ms",
        f"  Slowest Build: {s['max_duration_ms']:.0f} ms",
        "",
        "Cache Efficiency:",
        _average_line("Average Hit Rate", s["avg_cache_hit_rate"], 1, "%", s),
        f"  Trend: {s['cache_trend']}",
        "",
        "Parallelism:",
        _average_line("Average Utilization", s["avg_utilization"], 1, "%", s),
        _average_line("Targets/Second", s["avg_targets_per_second"], 2, "", s),
        "",
        "Top Bottlenecks:",
    ]
    bn = _bottlenecks_exact([r for x in ss for r in x.executed_runs])[:top]
    if bn:
        for i, (label, mean) in enumerate(bn, 1):
            lines.append(f"  {i}. {label} (avg: {format_duration(mean)})")
    else:
        lines.append("  (none)")
    lines += ["", f"Build Time Trend: {s['duration_trend']}"]
    regs = _regressions_exact(ss, threshold)
    if regs:
        lines += ["", "\u26a0\ufe0f  Performance Regressions Detected:"]
        for _sid, start, ratio, expected, actual in regs:
            lines.append(
                f"  \u2022 {format_utc(start)}: {float(ratio):.1f}x slower than average "
                f"(expected {format_duration(expected)}, got {format_duration(actual)})"
            )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(f"usage: {sys.argv[0]} EVENTS.jsonl")
    with open(sys.argv[1], encoding="utf-8") as fh:
        sys.stdout.write(summary_text(sessions_from_lines(fh)))
