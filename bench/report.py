"""Turn raw measurements into a summary, the issue's targets, JSON and Markdown."""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from bench.markdown import markdown

__all__ = ["build", "markdown"]
PEERS = ("direct", "nginx", "litellm", "portkey")


def _median(values: Iterable[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return statistics.median(known) if known else None


def _pct(values: list[float], q: float) -> float | None:
    values = sorted(v for v in values if v is not None)
    if not values:
        return None
    return values[min(len(values) - 1, round(q / 100 * (len(values) - 1)))]


def _load_summary(runs: list[dict[str, Any]], seconds: int) -> dict[str, Any]:
    groups: dict[tuple[str, int, str], list[dict[str, Any]]] = defaultdict(list)
    for run in runs:
        groups[(run["mode"], run["conc"], run["target"])].append(run)
    out: dict[str, Any] = {}
    for (mode, conc, target), items in sorted(groups.items()):
        requests = sum(r["requests"] for r in items)
        cpu = sum(r["cpu_s"] for r in items)
        wrk_cpu = sum(r.get("wrk_cpu_s", 0.0) for r in items)
        out.setdefault(mode, {}).setdefault(str(conc), {})[target] = {
            "rps": _median([r["rps"] for r in items]),
            "p50_ms": _median([r["p50_us"] / 1000 for r in items]),
            "p99_ms": _median([r["p99_us"] / 1000 for r in items]),
            "errors": sum(r["errors"] for r in items),
            "requests": requests,
            "cpu_s_per_1k": 1000 * cpu / requests if requests else None,
            "wrk_cpu_s_per_1k": 1000 * wrk_cpu / requests if requests else None,
            "busiest_share": _median([r.get("busiest_share") for r in items]),
            "other_cpu_pct": _median([100 * r["other_cpu_s"] / seconds / 2 for r in items]),
            "rounds": len(items),
        }
    return out


def _peaks(load: dict[str, Any]) -> dict[str, dict[str, dict[str, Any]]]:
    peaks: dict[str, dict[str, dict[str, Any]]] = {}
    for mode, by_conc in load.items():
        for conc, by_target in by_conc.items():
            for target, row in by_target.items():
                best = peaks.setdefault(mode, {}).get(target)
                if row["rps"] is not None and (best is None or row["rps"] > best["rps"]):
                    peaks[mode][target] = {"rps": row["rps"], "conc": int(conc)}
    return peaks


def _ttfb(samples: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    out = {}
    for target, items in samples.items():
        good = [s for s in items if not s["error"]]
        ttfb = [1000 * s["ttfb_s"] for s in good if s["ttfb_s"] is not None]
        total = [1000 * s["total_s"] for s in good if s["total_s"] is not None]
        out[target] = {
            "n": len(items),
            "errors": len(items) - len(good),
            "ttfb_p50_ms": _pct(ttfb, 50),
            "ttfb_p99_ms": _pct(ttfb, 99),
            "total_p50_ms": _pct(total, 50),
        }
    direct = out.get("direct", {}).get("ttfb_p50_ms")
    for row in out.values():
        row["added_p50_ms"] = (
            row["ttfb_p50_ms"] - direct
            if direct is not None and row["ttfb_p50_ms"] is not None
            else None
        )
    return out


def _cold(samples: dict[str, dict[str, list[dict[str, Any]]]]) -> dict[str, Any]:
    """Per mode and target: p50/p99 of the cold request (total for JSON, first byte for a
    stream), and what each adds over the direct upstream's."""
    out: dict[str, Any] = {}
    for mode, by_target in samples.items():
        field = "total_s" if mode == "json" else "ttfb_s"
        rows = {}
        for target, items in by_target.items():
            good = [1000 * s[field] for s in items if not s["error"] and s[field] is not None]
            rows[target] = {
                "n": len(items),
                "errors": len(items) - len(good),
                "p50_ms": _pct(good, 50),
                "p99_ms": _pct(good, 99),
            }
        direct = rows.get("direct", {})
        for row in rows.values():
            for q in ("p50", "p99"):
                mine, base = row[f"{q}_ms"], direct.get(f"{q}_ms")
                known = mine is not None and base is not None
                row[f"added_{q}_ms"] = mine - base if known else None
        out[mode] = rows
    return out


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def _goal(
    name: str, measured: float | None, limit: float, unit: str, higher: bool, note: str = ""
) -> dict[str, Any]:
    met = None if measured is None else (measured >= limit if higher else measured <= limit)
    return {
        "goal": name,
        "measured": measured,
        "limit": limit,
        "unit": unit,
        "higher_is_better": higher,
        "met": met,
        "note": note,
    }


def _workers_note(load: dict[str, Any], peaks: dict[str, Any]) -> str:
    """What to judge the 2-worker ratio by, at each target's peak: CPU per request, the
    load generator's own (it shares the cores), and how evenly the workers were used."""
    rows = {t: load.get(str(peaks.get(t, {}).get("conc")), {}).get(t, {}) for t in peaks}
    one, two = rows.get("savegate", {}), rows.get("savegate-2w", {})
    if not one.get("cpu_s_per_1k") or not two.get("cpu_s_per_1k"):
        return ""
    note = f"CPU s/1k req {one['cpu_s_per_1k']:.3f} (1) vs {two['cpu_s_per_1k']:.3f} (2)"
    if two.get("wrk_cpu_s_per_1k") is not None:
        note += f"; wrk {two['wrk_cpu_s_per_1k']:.3f}"
    if two.get("busiest_share") is not None:
        note += f"; busiest worker {100 * two['busiest_share']:.0f} %"
    return note


def _goals(s: dict[str, Any]) -> list[dict[str, Any]]:
    peaks, c1 = s["peak_rps"], s["load"].get("json", {}).get("1", {})
    goals = []
    for mode in ("json", "stream"):
        sg = peaks.get(mode, {}).get("savegate", {}).get("rps")
        label = "non-stream" if mode == "json" else "stream"
        for peer, factor in (("litellm", 20.0), ("portkey", 2.0)):
            other = peaks.get(mode, {}).get(peer, {}).get("rps")
            goals.append(
                _goal(
                    f"throughput ≥ {factor:g}x {peer} ({label}, peak req/s)",
                    _ratio(sg, other),
                    factor,
                    "x",
                    True,
                    "" if other else f"{peer} not measured",
                )
            )
    for mode in ("json", "stream"):
        one = peaks.get(mode, {}).get("savegate", {}).get("rps")
        two = peaks.get(mode, {}).get("savegate-2w", {}).get("rps")
        label = "non-stream" if mode == "json" else "stream"
        goals.append(
            _goal(
                f"2 workers against 1 ({label}, peak req/s)",
                _ratio(two, one),
                1.6,
                "x",
                True,
                _workers_note(s["load"].get(mode, {}), peaks.get(mode, {})),
            )
        )
    direct, sg = c1.get("direct", {}), c1.get("savegate", {})
    for q, limit in (("p50", 0.5), ("p99", 2.0)):
        added = (sg[f"{q}_ms"] - direct[f"{q}_ms"]) if sg and direct else None
        goals.append(
            _goal(f"added latency at concurrency 1, {q} (non-stream)", added, limit, "ms", False)
        )
    goals.append(
        _goal(
            "stream TTFB added, p50",
            s["ttfb"].get("savegate", {}).get("added_p50_ms"),
            0.5,
            "ms",
            False,
        )
    )
    cold = s.get("cold", {})
    for q, limit in (("p50", 0.3), ("p99", 1.0)):
        goals.append(
            _goal(
                f"cold request added, {q} (non-stream, after an idle gap)",
                cold.get("json", {}).get("savegate", {}).get(f"added_{q}_ms"),
                limit,
                "ms",
                False,
            )
        )
    idle = s["idle"].get("savegate", {}).get("bytes_per_stream")
    goals.append(
        _goal(
            "gateway memory per idle open stream",
            None if idle is None else idle / 1024,
            50,
            "KB",
            False,
        )
    )
    workers = [m["rss"] for role, m in s["memory"].get("2", {}).items() if role != "supervisor"]
    goals.append(
        _goal(
            "idle worker RSS, one provider, restart (--workers 2)",
            max(workers) if workers else None,
            60,
            "MiB",
            False,
            "bench.memory",
        )
    )
    burst = s["burst"].get("savegate", {})
    streams, held = burst.get("streams", 2000), burst.get("peak_held_upstream")
    row = _goal(
        f"{streams} concurrent streams: errors",
        burst.get("errors"),
        0,
        "errors",
        False,
        f"most held at once upstream: {held}" if burst else "",
    )
    if row["met"] and (held or 0) < streams:
        row["met"] = False
        row["note"] += f" (< {streams}: not all were open at once)"
    goals.append(row)
    emb = s.get("embedded") or {}
    share = None
    if emb.get("direct") and emb.get("savegate"):
        share = _ratio(emb["savegate"]["decode_tps"], emb["direct"]["decode_tps"])
    goals.append(
        _goal(
            "embedded model tokens/s through SaveGate vs direct",
            None if share is None else 100 * share,
            95,
            "%",
            True,
            emb.get("error", ""),
        )
    )
    return goals


def _base_against_new(s: dict[str, Any]) -> list[dict[str, Any]]:
    """This tree against the base revision, measured interleaved in the same run."""
    if "savegate-base" not in s["peak_rps"].get("json", {}):
        return []
    rows = []
    for mode, label in (("json", "peak req/s, non-stream"), ("stream", "peak req/s, stream")):
        peaks = s["peak_rps"].get(mode, {})
        rows.append(
            {
                "measure": label,
                "base": peaks.get("savegate-base", {}).get("rps"),
                "new": peaks.get("savegate", {}).get("rps"),
                "higher_is_better": True,
            }
        )
    c1 = s["load"].get("json", {}).get("1", {})
    ttfb = s["ttfb"]
    for label, base, new in (
        ("latency p50 at c=1, ms", c1.get("savegate-base", {}), c1.get("savegate", {})),
        ("stream TTFB p50, ms", ttfb.get("savegate-base", {}), ttfb.get("savegate", {})),
    ):
        key = "p50_ms" if "latency" in label else "ttfb_p50_ms"
        row = {"measure": label, "base": base.get(key), "new": new.get(key)}
        rows.append({**row, "higher_is_better": False})
    for row in rows:
        base, new = row["base"], row["new"]
        row["change_pct"] = 100 * (new - base) / base if base and new is not None else None
    return rows


def build(result: dict[str, Any]) -> dict[str, Any]:
    load = _load_summary(result.get("runs", []), result["plan"]["seconds"])
    summary: dict[str, Any] = {
        "meta": result.get("meta", {}),
        "plan": result["plan"],
        "peers": result.get("peers", {}),
        "load": load,
        "peak_rps": _peaks(load),
        "ttfb": _ttfb(result.get("ttfb", {})),
        "cold": _cold(result.get("cold", {})),
        "idle": result.get("idle", {}),
        "burst": result.get("burst", {}),
        "rss_start": result.get("rss_start", {}),
        "rss_peak": result.get("rss_peak", {}),
        "profile": result.get("profile"),
        "embedded": result.get("embedded"),
        "memory": result.get("memory", {}),
        "memory_note": result.get("memory_note", ""),
        "phase_seconds": result.get("phase_seconds", {}),
        "errors": result.get("errors", {}),
    }
    summary["goals"] = _goals(summary)
    summary["base_against_new"] = _base_against_new(summary)
    summary["runs"] = result.get("runs", [])
    return summary
