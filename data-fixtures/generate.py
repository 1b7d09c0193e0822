#!/usr/bin/env python3
"""Generate a deterministic, realistic build-telemetry history as JSON Lines.

The output follows the build-event protocol (build_started, target_started,
target_finished, build_finished).  Everything is a pure function of the seed
and of "today/now": the newest build starts on the current UTC day, a few
hours before "now", and all other builds are spread over the preceding
``--days`` days.  Running the script twice with the same options produces
byte-identical output.

Usage:
    python data-fixtures/generate.py --output history.jsonl
    python data-fixtures/generate.py --seed 7 --builds 50 --days 14
    python data-fixtures/generate.py --today 2026-11-20            # now = 23:59 UTC
    python data-fixtures/generate.py --now-ms 1763633730250        # pin "now" exactly

Only the Python standard library is used.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import heapq
import json
import math
import random
import sys
from dataclasses import dataclass, field

DAY_MS = 86_400_000
HOUR_MS = 3_600_000
MINUTE_MS = 60_000

# --------------------------------------------------------------------------
# Monorepo model
# --------------------------------------------------------------------------

# (package, layer, [target names]).  A target may only depend on targets of
# a strictly lower layer, which keeps the graph acyclic.
PACKAGES: list[tuple[str, int, list[str]]] = [
    ("//third_party/protobuf", 0, ["protoc", "runtime-cc", "runtime-py"]),
    ("//third_party/grpc", 0, ["grpc-cc", "grpc-web"]),
    ("//third_party/npm", 0, ["react", "typescript", "webpack", "lodash"]),
    ("//third_party/jvm", 0, ["okhttp", "kotlin-stdlib"]),
    ("//tools/codegen", 0, ["generator", "templates"]),
    ("//tools/lint", 0, ["eslint-config", "clang-tidy-config"]),
    (
        "//shared/proto",
        1,
        ["common", "user", "auth", "billing", "search", "events", "notifications", "analytics"],
    ),
    (
        "//shared",
        2,
        ["proto", "config", "logging", "errors", "utils", "metrics", "tracing", "flags", "crypto"],
    ),
    ("//shared/testing", 3, ["fakes", "matchers", "golden"]),
    ("//backend/db", 3, ["schema", "pool"]),
    ("//backend/db", 4, ["migrations", "orm", "fixtures", "seed-data"]),
    (
        "//backend/lib",
        3,
        ["http", "grpc", "cache", "queue", "auth-client", "validation", "serialization"],
    ),
    ("//frontend/design", 3, ["tokens", "icons", "theme"]),
    ("//backend/services/auth", 4, ["lib", "handlers", "client"]),
    ("//backend/services/billing", 4, ["lib", "handlers", "client"]),
    ("//backend/services/search", 4, ["lib", "handlers", "client", "indexer"]),
    ("//backend/services/notifications", 4, ["lib", "handlers", "client"]),
    ("//backend/services/users", 4, ["lib", "handlers", "client"]),
    ("//backend/services/analytics", 4, ["lib", "handlers", "client"]),
    ("//backend/services/payments", 4, ["lib", "handlers", "client"]),
    (
        "//frontend/components",
        4,
        [
            "button",
            "input",
            "modal",
            "table",
            "chart",
            "form",
            "nav",
            "layout",
            "toast",
            "avatar",
            "dropdown",
            "tabs",
        ],
    ),
    ("//frontend/state", 4, ["store", "api-client", "hooks", "router"]),
    ("//mobile/shared", 4, ["models", "network", "storage"]),
    ("//backend/services/auth", 5, ["server"]),
    ("//backend/services/billing", 5, ["server"]),
    ("//backend/services/search", 5, ["server"]),
    ("//backend/services/notifications", 5, ["server"]),
    ("//backend/services/users", 5, ["server"]),
    ("//backend/services/analytics", 5, ["server"]),
    ("//backend/services/payments", 5, ["server"]),
    ("//backend", 5, ["api-lib", "worker", "scheduler", "cli"]),
    (
        "//frontend/pages",
        5,
        ["home", "login", "settings", "billing", "search", "admin", "dashboard", "profile"],
    ),
    ("//mobile/android", 5, ["lib", "resources"]),
    ("//mobile/ios", 5, ["lib", "resources"]),
    ("//backend", 6, ["api-server"]),
    ("//frontend", 6, ["app"]),
    ("//mobile/android", 6, ["app"]),
    ("//mobile/ios", 6, ["app"]),
    ("//frontend", 7, ["bundle", "storybook"]),
    ("//backend", 8, ["api-server_test", "worker_test"]),
    ("//backend/db", 8, ["migrations_test", "orm_test"]),
    ("//backend/lib", 8, ["http_test", "cache_test"]),
    ("//backend/services/auth", 8, ["server_test"]),
    ("//backend/services/billing", 8, ["server_test"]),
    ("//backend/services/search", 8, ["server_test", "indexer_test"]),
    ("//backend/services/notifications", 8, ["server_test"]),
    ("//backend/services/users", 8, ["server_test"]),
    ("//backend/services/analytics", 8, ["server_test"]),
    ("//backend/services/payments", 8, ["server_test"]),
    ("//frontend", 8, ["bundle_test", "e2e_test"]),
    ("//frontend/components", 8, ["components_test"]),
    ("//frontend/pages", 8, ["pages_test"]),
    ("//frontend/state", 8, ["state_test"]),
    ("//mobile/android", 8, ["app_test"]),
    ("//mobile/ios", 8, ["app_test"]),
    ("//shared", 8, ["utils_test"]),
    ("//infra/docker", 8, ["api-image", "worker-image", "frontend-image"]),
    ("//infra/k8s", 8, ["manifests", "helm-chart"]),
    ("//docs", 8, ["site", "api-reference"]),
    ("//release", 9, ["artifacts", "changelog"]),
]

# Heavy targets and their characteristic duration in milliseconds.
HEAVY_MS = {
    "//backend:api-server": 2400,
    "//frontend:bundle": 2700,
    "//mobile/android:app": 2900,
    "//mobile/ios:app": 2500,
    "//infra/docker:api-image": 1400,
    "//frontend:e2e_test": 1800,
}

# The target that regresses in the final builds.
REGRESSING_TARGET = "//backend:api-server"
# Number of final builds showing the regression.
SLOW_TAIL = 3

# Explicit dependency hints (in addition to the random ones) that make the
# graph look like a real monorepo.  Prefix entries ("//frontend/components:")
# mean "every target of that package at a lower layer".
DEP_HINTS = {
    "//shared:proto": ["//shared/proto:"],
    "//backend:api-server": [
        "//backend:api-lib",
        "//backend/services/auth:server",
        "//backend/services/users:server",
        "//backend/db:migrations",
        "//backend/services/billing:server",
        "//backend/services/search:server",
    ],
    "//frontend:bundle": ["//frontend:app", "//third_party/npm:webpack"],
    "//frontend:app": ["//frontend/pages:", "//frontend/state:store"],
    "//frontend:storybook": ["//frontend/components:"],
    "//mobile/android:app": ["//mobile/android:lib", "//mobile/android:resources"],
    "//mobile/ios:app": ["//mobile/ios:lib", "//mobile/ios:resources"],
    "//infra/docker:api-image": ["//backend:api-server"],
    "//infra/docker:worker-image": ["//backend:worker"],
    "//infra/docker:frontend-image": ["//frontend:bundle"],
    "//backend:api-server_test": ["//backend:api-server", "//shared/testing:fakes"],
    "//frontend:bundle_test": ["//frontend:bundle"],
    "//frontend:e2e_test": ["//frontend:bundle", "//backend:api-server"],
    "//mobile/android:app_test": ["//mobile/android:app"],
    "//mobile/ios:app_test": ["//mobile/ios:app"],
    "//release:artifacts": ["//infra/docker:", "//mobile/android:app", "//mobile/ios:app"],
    "//release:changelog": ["//docs:site"],
    "//backend/db:migrations": ["//backend/db:schema"],
    "//backend/db:orm": ["//backend/db:schema", "//backend/db:pool"],
    "//docs:api-reference": ["//shared:proto", "//tools/codegen:generator"],
}

# Goals for partial (developer) builds: the build covers these targets and
# their transitive dependencies.
DEV_GOALS = [
    ["//frontend:bundle"],
    ["//frontend/components:components_test"],
    ["//frontend/pages:pages_test", "//frontend/state:state_test"],
    ["//backend:api-server"],
    ["//backend:api-server_test"],
    ["//backend/services/billing:server_test", "//backend/services/payments:server_test"],
    ["//backend/services/search:indexer_test"],
    ["//backend/db:migrations_test", "//backend/db:orm_test"],
    ["//mobile/android:app_test"],
    ["//mobile/ios:app"],
    ["//docs:site", "//docs:api-reference"],
]

COMPILE_ERRORS = {
    "cc": [
        "{path}.cc:{line}:17: error: use of undeclared identifier 'request_ctx'",
        "{path}.cc:{line}:9: error: no matching function for call to 'Serialize'",
        "{path}.h:{line}:3: error: unknown type name 'StatusOr'",
    ],
    "ts": [
        "{path}.tsx({line},21): error TS2339: Property 'userId' does not exist on type 'Session'.",
        "{path}.ts({line},5): error TS2322: Type 'string' is not assignable to type 'number'.",
    ],
    "kt": [
        "e: {path}.kt: ({line}, 13): Unresolved reference: fetchProfile",
    ],
    "swift": [
        "{path}.swift:{line}:22: error: cannot find 'SessionStore' in scope",
    ],
}


@dataclass
class Target:
    label: str
    layer: int
    base_ms: float
    deps: list[int] = field(default_factory=list)
    rdeps: list[int] = field(default_factory=list)


def _package(label: str) -> str:
    return label.split(":", 1)[0]


def build_graph(seed: int) -> list[Target]:
    """Build the monorepo target graph (stable for a given seed)."""
    rng = random.Random(f"graph:{seed}")
    targets: list[Target] = []
    for pkg, layer, names in PACKAGES:
        for name in names:
            label = f"{pkg}:{name}"
            if label in HEAVY_MS:
                base = HEAVY_MS[label]
            elif name.endswith("_test"):
                base = math.exp(rng.uniform(math.log(60), math.log(400)))
            else:
                base = math.exp(rng.uniform(math.log(20), math.log(400)))
            targets.append(Target(label, layer, round(base, 1)))
    index = {t.label: i for i, t in enumerate(targets)}
    assert len(index) == len(targets), "duplicate label"

    for t in targets:
        lower = [j for j, u in enumerate(targets) if u.layer < t.layer]
        if not lower:
            continue
        deps: set[int] = set()
        for hint in DEP_HINTS.get(t.label, []):
            if hint.endswith(":"):
                deps.update(j for j in lower if targets[j].label.startswith(hint))
            else:
                j = index[hint]
                assert targets[j].layer < t.layer, (t.label, hint)
                deps.add(j)
        pkg = _package(t.label)
        same_pkg = [j for j in lower if _package(targets[j].label) == pkg]
        near = [j for j in lower if targets[j].layer >= t.layer - 2]
        top_pkg = pkg.split("/")[2] if pkg.count("/") >= 2 else pkg
        same_area = [j for j in lower if targets[j].label.startswith(f"//{top_pkg}")]
        want = rng.randint(1, 3) + (1 if t.layer >= 4 else 0)
        pools = [same_pkg, same_pkg, same_area, near, lower]
        tries = 0
        while len(deps) < want + len(DEP_HINTS.get(t.label, [])) and tries < 40:
            tries += 1
            pool = rng.choice(pools)
            if pool:
                deps.add(rng.choice(pool))
        t.deps = sorted(deps)
    for i, t in enumerate(targets):
        for d in t.deps:
            targets[d].rdeps.append(i)
    return targets


def closure(targets: list[Target], start: list[int], attr: str) -> set[int]:
    seen: set[int] = set()
    stack = list(start)
    while stack:
        i = stack.pop()
        if i in seen:
            continue
        seen.add(i)
        stack.extend(getattr(targets[i], attr))
    return seen


# --------------------------------------------------------------------------
# Build plans
# --------------------------------------------------------------------------


@dataclass
class BuildPlan:
    index: int
    session: str
    ci: bool
    tool: str
    workers: int
    report_parallelism: bool
    labels: dict | None
    host: str | None
    commit: str | None
    branch: str | None
    members: list[int]
    hit_target: float
    ts_style: str = "int"  # int | float | rfc3339
    fail: bool = False
    fail_first: bool = False  # the first failure breaks the regressing target
    interrupted: bool = False
    slow: bool = False
    interleave_with_prev: bool = False


@dataclass
class Event:
    t: float  # relative ms since build start
    rank: int  # tie breaker for equal timestamps
    seq: int
    payload: dict


def plan_builds(n: int, targets: list[Target], seed: int) -> list[BuildPlan]:
    rng = random.Random(f"plan:{seed}")
    index = {t.label: i for i, t in enumerate(targets)}
    everything = list(range(len(targets)))
    slow_from = max(0, n - SLOW_TAIL)

    # Special builds chosen among the "ordinary" history (not the slow tail).
    ordinary = list(range(1, slow_from)) if slow_from > 1 else []
    special = rng.sample(ordinary, min(len(ordinary), 12)) if ordinary else []
    n_fail = min(len(special), 4)
    fail_idx = set(special[:n_fail])
    interrupted_idx = set(special[n_fail : n_fail + 1])
    rest = special[n_fail + 1 :]
    interleave_idx = set(rest[:2])  # build i starts while i-1 runs
    rfc_idx = set(rest[2:3])
    float_idx = set(rest[3:7])

    ci_counter = 1040
    dev_counter = 0
    plans: list[BuildPlan] = []
    for i in range(n):
        progress = i / max(1, n - 1)
        slow = i >= slow_from and n > SLOW_TAIL
        is_ci = slow or i in interleave_idx or (i + 1) in interleave_idx or rng.random() < 0.68
        if is_ci:
            ci_counter += rng.randint(1, 4)
            session = f"ci-{ci_counter:06d}"
            tool = "bazel" if rng.random() < 0.75 else "ninja"
            workers = 8 if rng.random() < 0.7 else 4
            branch = "main" if rng.random() < 0.8 else rng.choice(["release-2.4", "release-2.5"])
            labels = {"ci": "true", "branch": branch}
            if rng.random() < 0.4:
                labels["pipeline"] = rng.choice(["presubmit", "postsubmit", "nightly"])
            host = f"ci-runner-{rng.randint(1, 12):02d}"
            members = everything
        else:
            dev_counter += 1
            ws = rng.randint(1, 6)
            session = f"dev-ws{ws:02d}-{dev_counter:05d}"
            tool = "ninja" if rng.random() < 0.55 else "bazel"
            workers = 4 if rng.random() < 0.6 else 8
            branch = f"feature/change-{rng.randint(100, 999)}"
            labels = {"ci": "false"} if rng.random() < 0.6 else None
            host = f"dev-ws{ws:02d}"
            if rng.random() < 0.7:
                goals = [index[g] for g in rng.choice(DEV_GOALS)]
                members = sorted(closure(targets, goals, "deps"))
            else:
                members = everything
        report_par = rng.random() < 0.88
        if tool == "ninja" and rng.random() < 0.5:
            labels = dict(labels or {})
            labels["BUILDER_PARALLEL"] = str(workers)
        commit = (
            "".join(rng.choice("0123456789abcdef") for _ in range(40))
            if rng.random() < 0.8
            else None
        )
        if rng.random() < 0.3:
            host = None

        # Cache hit rate: clean builds ~0 %, incremental 50-95 %, trending up.
        if slow:
            hit = rng.uniform(0.04, 0.12)
        elif rng.random() < 0.16 - 0.13 * progress:
            hit = rng.choice([0.0, 0.0, 0.0, 0.02])
        else:
            hit = min(0.95, rng.uniform(0.45, 0.70) + 0.25 * progress)

        if slow:
            report_par = True
            workers = 8
        style = "rfc3339" if i in rfc_idx else "float" if i in float_idx else "int"
        plans.append(
            BuildPlan(
                index=i,
                session=session,
                ci=is_ci,
                tool=tool,
                workers=workers,
                report_parallelism=report_par,
                labels=labels,
                host=host,
                commit=commit,
                branch=branch if rng.random() < 0.7 else None,
                members=members,
                hit_target=hit,
                ts_style=style,
                fail=i in fail_idx,
                fail_first=bool(fail_idx) and i == min(fail_idx),
                interrupted=i in interrupted_idx,
                slow=slow,
                interleave_with_prev=i in interleave_idx,
            )
        )
    return plans


def choose_executed(plan: BuildPlan, targets: list[Target], rng: random.Random) -> set[int]:
    """Pick changed targets so that the set to rebuild (changed targets plus
    everything depending on them) approximates the planned miss rate."""
    members = set(plan.members)
    goal = round((1.0 - plan.hit_target) * len(members))
    if goal >= len(members):
        return set(members)
    executed: set[int] = set()
    # Weighted shuffle: most edits touch leaf-ish code with few dependants,
    # edits to widely used libraries are rarer.
    fanout = {i: len(closure(targets, [i], "rdeps") & members) for i in sorted(members)}
    order = sorted(sorted(members), key=lambda i: -(rng.random() ** fanout[i]))
    for cand in order:
        if len(executed) >= goal:
            break
        if cand in executed:
            continue
        add = closure(targets, [cand], "rdeps") & members
        new = add - executed
        # Avoid overshooting badly with a wide-fanout change.
        if len(executed) + len(new) > goal + max(3, goal // 8):
            continue
        executed |= add
    if plan.slow:
        reg = next(i for i, t in enumerate(targets) if t.label == REGRESSING_TARGET)
        executed |= closure(targets, [reg], "rdeps") & members
    return executed


def simulate(
    plan: BuildPlan, targets: list[Target], rng: random.Random, regression: float = 3.0
) -> tuple[list[Event], float]:
    """Simulate one build with a list scheduler of ``plan.workers`` workers.

    Returns the events (times relative to build start) and the end time
    (build_finished time, or the cut-off time for an interrupted build)."""
    members = set(plan.members)
    executed = choose_executed(plan, targets, rng)

    fail_target = None
    if plan.fail:
        # Prefer a compile step with dependants so that something is skipped.
        cands = [
            i
            for i in sorted(executed)
            if any(r in executed for r in targets[i].rdeps)
            and not targets[i].label.endswith("_test")
            and not targets[i].label.startswith(("//infra", "//docs", "//release"))
        ]
        if not cands:
            # Force a small incremental rebuild around a library target.
            lib = next(i for i, t in enumerate(targets) if t.label == "//backend/lib:http")
            executed |= closure(targets, [lib], "rdeps") & members
            cands = [lib]
        heavy_pref = [i for i in cands if targets[i].label == REGRESSING_TARGET]
        if plan.fail_first and heavy_pref:
            fail_target = heavy_pref[0]
        else:
            fail_target = rng.choice([i for i in cands if i not in heavy_pref] or cands)

    events: list[Event] = []
    seq = 0

    def emit(t: float, rank: int, payload: dict) -> None:
        nonlocal seq
        events.append(Event(t, rank, seq, payload))
        seq += 1

    start_payload: dict = {"event": "build_started"}
    if plan.report_parallelism:
        start_payload["parallelism"] = plan.workers
    start_payload["tool"] = plan.tool
    if plan.labels is not None:
        start_payload["labels"] = dict(plan.labels)
    if plan.host:
        start_payload["host"] = plan.host
    if plan.commit:
        start_payload["commit"] = plan.commit
    if plan.branch:
        start_payload["branch"] = plan.branch
    emit(0.0, 0, start_payload)

    analysis = rng.uniform(250, 900) if plan.tool == "bazel" else rng.uniform(15, 80)
    remaining = {i: sum(1 for d in targets[i].deps if d in members) for i in members}
    ready_heap: list[tuple[float, int, int]] = []  # executed targets waiting for a worker
    completions: list[tuple[float, int, int]] = []  # (time, seq, target)
    worker_free = [analysis] * plan.workers
    worker_of: dict[int, int] = {}
    skipped: set[int] = set()
    cseq = 0

    def make_ready(i: int, t: float) -> None:
        nonlocal cseq
        if i in executed:
            heapq.heappush(ready_heap, (t, -len(targets[i].rdeps), i))
        else:
            # Cache hit: no worker, finishes after a short lookup.
            cseq += 1
            done = t + rng.uniform(1.0, 18.0)
            heapq.heappush(completions, (done, cseq, i))
            emit(
                done,
                1,
                {"event": "target_finished", "target": targets[i].label, "status": "cached"},
            )

    for i in sorted(members):
        if remaining[i] == 0:
            make_ready(i, analysis)

    def dispatch(now: float) -> None:
        nonlocal cseq
        while ready_heap:
            free = [w for w in range(plan.workers) if worker_free[w] <= now]
            if not free:
                return
            _, _, i = heapq.heappop(ready_heap)
            w = free[0]
            gap = rng.uniform(0.3, 5.0)
            if rng.random() < 0.05:
                gap += rng.uniform(15.0, 120.0)
            begin = now + gap
            dur = targets[i].base_ms * math.exp(rng.gauss(0.0, 0.14))
            if plan.slow and targets[i].label == REGRESSING_TARGET:
                dur *= regression * rng.uniform(0.97, 1.07)
            dur = max(5.0, dur)
            if i == fail_target:
                dur *= rng.uniform(0.35, 0.9)
            done = begin + dur
            worker_free[w] = math.inf
            worker_of[i] = w
            cseq += 1
            heapq.heappush(completions, (done, cseq, i))
            report_duration = rng.random() < 0.10
            fin: dict = {"event": "target_finished", "target": targets[i].label}
            if i == fail_target:
                fin["status"] = "failed"
                fin["error"] = compile_error(targets[i].label, rng)
            else:
                fin["status"] = "built"
            # The targets of this build it waited for (so `show` has a critical path).
            deps = [targets[d].label for d in targets[i].deps if d in members]
            if report_duration:
                # A tool that tells the duration when it finishes: its start says only what
                # the target waited for (the duration decides its times).
                fin["duration_ms"] = math.floor(done) - math.floor(begin)
                told = {"event": "target_started", "target": targets[i].label, "deps": deps}
                emit(begin, 2, told)
            else:
                started = {"event": "target_started", "target": targets[i].label, "worker": w}
                emit(begin, 2, started | {"deps": deps})
            emit(done, 1, fin)

    now = analysis
    dispatch(now)
    last_done = analysis
    while completions:
        now, _, i = heapq.heappop(completions)
        last_done = max(last_done, now)
        if i in worker_of:
            worker_free[worker_of[i]] = now
        if i == fail_target:
            dependants = (closure(targets, [i], "rdeps") & members) - {i}
            for k, d in enumerate(sorted(dependants, key=lambda x: (targets[x].layer, x))):
                skipped.add(d)
                emit(
                    now + 1 + k * rng.uniform(0.0, 0.4),
                    1,
                    {"event": "target_finished", "target": targets[d].label, "status": "skipped"},
                )
        else:
            for r in targets[i].rdeps:
                if r in members and r not in skipped:
                    remaining[r] -= 1
                    if remaining[r] == 0:
                        make_ready(r, now)
        dispatch(now)

    end = last_done + rng.uniform(12, 160)
    if plan.interrupted:
        cut = analysis + (last_done - analysis) * rng.uniform(0.35, 0.6)
        events = [e for e in events if e.t <= cut]
        return events, cut
    fin_payload: dict = {"event": "build_finished", "success": not plan.fail}
    if plan.fail:
        fin_payload["error"] = f"Compilation failed for {targets[fail_target].label}"
    emit(end, 3, fin_payload)
    return events, end


def compile_error(label: str, rng: random.Random) -> str:
    pkg, name = label[2:].split(":", 1)
    if pkg.startswith("frontend"):
        lang = "ts"
    elif pkg.startswith("mobile/android"):
        lang = "kt"
    elif pkg.startswith("mobile/ios"):
        lang = "swift"
    else:
        lang = "cc"
    path = f"{pkg}/{name.replace('-', '_')}"
    return rng.choice(COMPILE_ERRORS[lang]).format(path=path, line=rng.randint(12, 480))


# --------------------------------------------------------------------------
# Timeline and output
# --------------------------------------------------------------------------


def resolve_now(today: str | None, now_ms: int | None) -> tuple[int, int, int]:
    """Return (start of the UTC day, anchor, now), all in epoch ms.

    The anchor is the reference point the history is laid out against.  It is
    "now" itself when --today/--now-ms pin the clock; when the wall clock is
    used it is rounded down to the full hour, so that repeated runs within the
    same hour produce byte-identical output."""
    if today is not None:
        day = _dt.date.fromisoformat(today)
        day_start = (
            int(_dt.datetime(day.year, day.month, day.day, tzinfo=_dt.UTC).timestamp()) * 1000
        )
        if now_ms is None:
            now_ms = day_start + 23 * HOUR_MS + 59 * MINUTE_MS
        elif not day_start <= now_ms < day_start + DAY_MS:
            raise SystemExit("--now-ms does not fall on the --today date (UTC)")
        return day_start, now_ms, now_ms
    if now_ms is not None:
        return now_ms - now_ms % DAY_MS, now_ms, now_ms
    # The only wall-clock input: timestamps are relative to the day it runs.
    now_ms = int(_dt.datetime.now(_dt.UTC).timestamp() * 1000)
    return now_ms - now_ms % DAY_MS, now_ms - now_ms % HOUR_MS, now_ms


def place_builds(
    plans: list[BuildPlan],
    durations: list[float],
    days: int,
    day_start: int,
    anchor_ms: int,
    now_ms: int,
    seed: int,
) -> list[int]:
    """Absolute start time (ms) of every build; the last one on today's UTC date."""
    rng = random.Random(f"timeline:{seed}")
    n = len(plans)
    # Newest build: a few hours before now, but not before 00:30 UTC today,
    # and (if at all possible, i.e. unless it is just past midnight) finished
    # before now, so every event lies in the past.
    last = anchor_ms - int(rng.uniform(2.0, 5.0) * HOUR_MS)
    last = max(last, day_start + 30 * MINUTE_MS)
    if last + durations[-1] + 1000 >= now_ms:
        last = now_ms - int(durations[-1]) - 1000
    if last < day_start:
        last = max(day_start, now_ms - 1)
    span = max(1, days * DAY_MS - 12 * HOUR_MS) if days > 1 else max(1, days * DAY_MS // 2)
    starts: list[int] = []
    for i in range(n):
        if n == 1:
            starts.append(last)
            continue
        u = i / (n - 1)
        if 0 < i < n - 1:
            u += rng.uniform(-0.35, 0.35) / (n - 1)
        starts.append(last - int(span * (1.0 - u)))
    starts[-1] = last
    for i in range(1, n):
        if plans[i].interleave_with_prev:
            # Second CI build of a pair starts while the first is still running.
            starts[i] = starts[i - 1] + int(durations[i - 1] * rng.uniform(0.15, 0.45))
        starts[i] = max(starts[i], starts[i - 1] + 1)
    if starts[-1] != last:
        raise SystemExit("too many builds for the requested --days window")
    return starts


def format_ts(abs_ms: float, style: str) -> int | float | str:
    if style == "float":
        return float(abs_ms)
    ms = int(abs_ms)
    if style == "rfc3339":
        secs, milli = divmod(ms, 1000)
        stamp = _dt.datetime(1970, 1, 1, tzinfo=_dt.UTC) + _dt.timedelta(seconds=secs)
        return stamp.strftime("%Y-%m-%dT%H:%M:%S") + f".{milli:03d}Z"
    return ms


def generate(
    seed: int, n_builds: int, days: int, day_start: int, anchor_ms: int, now_ms: int
) -> list[str]:
    targets = build_graph(seed)
    plans = plan_builds(n_builds, targets, seed)
    sims = []
    for plan in plans:
        sims.append(simulate(plan, targets, random.Random(f"build:{seed}:{plan.index}")))
    # The slow tail must stand out against the earlier history (>= ~1.7x the
    # mean build time) whatever the seed: make the regression worse if needed.
    done = [
        end
        for plan, (_, end) in zip(plans, sims, strict=False)
        if not plan.slow and not plan.interrupted
    ]
    baseline = sum(done) / len(done) if done else 0.0
    for plan in plans:
        if not plan.slow:
            continue
        regression = 3.0
        while sims[plan.index][1] < 1.7 * baseline and regression < 6.0:
            regression += 0.25
            sims[plan.index] = simulate(
                plan, targets, random.Random(f"build:{seed}:{plan.index}"), regression
            )
    starts = place_builds(plans, [end for _, end in sims], days, day_start, anchor_ms, now_ms, seed)

    keyed: list[tuple[float, int, int, str]] = []
    for plan, (events, _), start in zip(plans, sims, starts, strict=False):
        # Integer-ms builds truncate to the millisecond; float builds keep
        # 1/8 ms resolution (exactly representable, so the JSON stays short).
        quant = 8.0 if plan.ts_style == "float" else 1.0
        ordered = sorted(events, key=lambda e: (math.floor(e.t * quant), e.rank, e.seq))
        for k, ev in enumerate(ordered):
            rel = math.floor(ev.t * quant) / quant
            abs_ms = start + rel
            record = {
                "event": ev.payload["event"],
                "session": plan.session,
                "ts": format_ts(abs_ms, plan.ts_style),
            }
            record.update((k2, v) for k2, v in ev.payload.items() if k2 != "event")
            keyed.append((abs_ms, plan.index, k, json.dumps(record, separators=(",", ":"))))
    keyed.sort(key=lambda x: (x[0], x[1], x[2]))
    return [line for *_, line in keyed]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seed", type=int, default=42, help="random seed (default 42)")
    ap.add_argument("--builds", type=int, default=200, help="number of builds (default 200)")
    ap.add_argument("--days", type=int, default=60, help="history length in days (default 60)")
    ap.add_argument("--output", help="write to this file instead of stdout")
    ap.add_argument("--today", help="pin the current UTC date (YYYY-MM-DD); now = 23:59 that day")
    ap.add_argument("--now-ms", type=int, help="pin the current time (Unix epoch ms)")
    args = ap.parse_args(argv)
    if args.builds < 1:
        ap.error("--builds must be >= 1")
    if args.days < 1:
        ap.error("--days must be >= 1")

    day_start, anchor_ms, now_ms = resolve_now(args.today, args.now_ms)
    lines = generate(args.seed, args.builds, args.days, day_start, anchor_ms, now_ms)
    text = "".join(line + "\n" for line in lines)
    if args.output:
        with open(args.output, "w", encoding="utf-8", newline="\n") as fh:
            fh.write(text)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
