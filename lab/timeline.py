"""An experiment's timeline as SVG: answers per second by version against the rate asked (a
dashed line, the y-axis in answers per second), every failed request as a red mark at its own
millisecond, each step, each SIGTERM and each endpoint removal.

The axis spans the steps taken under load (two seconds either side), not the whole load, so a
rollout of a few seconds fills the picture.
"""

from html import escape
from typing import Any

PALETTE = ["#4e79a7", "#59a14f", "#f28e2b", "#b07aa1", "#76b7b2", "#edc948", "#9c755f"]
WIDTH, LEFT, RIGHT = 960, 110, 20
CHAR = 5.6  # width of a character of the 10 px labels, roughly
LANE = 150  # height of one Service's answers
MARKS = 70  # height of the lane of steps and pod events


def nice(value: float) -> int:
    """A round top for an axis: the smallest of 1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6 or 8 times a
    power of ten that is at least `value`."""
    power = 1
    while power * 10 <= value:
        power *= 10
    steps = (1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10)
    return next(round(m * power) for m in steps if m * power >= value)


def span(result: dict[str, Any]) -> tuple[float, float]:
    """(start, end) in unix ms of what the picture shows."""
    loads = [s["started_unix_ms"] for s in result["services"].values()]
    steps = [s for s in result["steps"] if s.get("started_unix_ms")]
    if not steps:
        return 0, 1
    after = [s for s in steps if not loads or s["started_unix_ms"] >= min(loads)]
    chosen = after or steps
    start = chosen[0]["started_unix_ms"] - 2000
    end = max(s.get("ended_unix_ms", s["started_unix_ms"]) for s in chosen) + 2000
    if loads:
        start = max(start, min(loads))
    return start, max(end, start + 1000)


def draw(result: dict[str, Any]) -> str:
    start, end = span(result)
    services = list(result["services"].items())
    height = 62 + MARKS + LANE * max(1, len(services)) + 50

    def x(ms: float) -> float:
        return LEFT + (ms - start) / (end - start) * (WIDTH - LEFT - RIGHT)

    title = f"{escape(result['experiment'])}: {escape(result.get('title', ''))}"
    settings = result.get("settings")
    if settings:
        # Every figure of a run holds at the lag it was measured at.
        title += (
            f" (propagation lag {escape(str(settings['lag']))}, "
            f"{settings['nodes']} nodes)"
        )
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
        + 'font-family="sans-serif" font-size="11">',
        f'<text x="{LEFT}" y="16" font-size="13">{title}</text>',
    ]
    # Seconds along the axis.
    seconds = int((end - start) / 1000) + 1
    every = max(1, seconds // 20)
    for i in range(0, seconds + 1, every):
        ms = start + i * 1000
        out.append(
            f'<line x1="{x(ms):.1f}" y1="52" x2="{x(ms):.1f}" y2="{height - 45}" '
            'stroke="#eee"/>'
            f'<text x="{x(ms):.1f}" y="{height - 30}" text-anchor="middle">{i}s</text>'
        )
    # Steps and pod events.
    top = 52
    # Labels of steps taken close together go on separate rows (three), each where it fits; a
    # label that would pass the right edge ends at its step's line instead of starting there.
    row_spans: list[list[tuple[float, float]]] = [[], [], []]
    for step in result["steps"]:
        t = step.get("started_unix_ms", 0)
        if start <= t <= end:
            label = step["step"] if isinstance(step["step"], str) else "expect"
            label = label.replace("kubectl ", "")
            if len(label) > 60:
                label = label[:59] + "…"
            width = CHAR * len(label)
            left = x(t) + 2
            anchor = "start"
            if left + width > WIDTH - RIGHT:
                left, anchor = x(t) - 2 - width, "end"
            span_ = (left - 4, left + width + 4)
            row = next(
                (
                    r
                    for r, taken in enumerate(row_spans)
                    if all(span_[1] <= a or span_[0] >= b for a, b in taken)
                ),
                None,
            )
            out.append(
                f'<line x1="{x(t):.1f}" y1="{top - 24}" x2="{x(t):.1f}" y2="{height - 45}" '
                'stroke="#333" stroke-dasharray="3,3"/>'
            )
            if row is not None:
                row_spans[row].append(span_)
                at = x(t) + 2 if anchor == "start" else x(t) - 2
                out.append(
                    f'<text x="{at:.1f}" y="{top - 16 + 11 * row}" fill="#333" '
                    f'font-size="10" text-anchor="{anchor}">{escape(label)}</text>'
                )
    colours = {"SIGTERM": "#e15759", "endpoint removed": "#7b3294", "ready": "#59a14f"}
    for row, (kind, colour) in enumerate(colours.items()):
        y = top + 24 + row * 14
        out.append(f'<text x="4" y="{y + 8}" fill="{colour}">{kind}</text>')
        for e in result["events"]:
            if e["event"].startswith(kind) and start <= e["unix_ms"] <= end:
                out.append(
                    f'<rect x="{x(e["unix_ms"]) - 1:.1f}" y="{y}" width="3" height="10" '
                    f'fill="{colour}"><title>{escape(str(e["pod"]))}</title></rect>'
                )
    # Answers per second, per Service, stacked by version; failures as red marks.
    versions = sorted({v for _, s in services for v in s["versions"]})
    colour_of = {v: PALETTE[i % len(PALETTE)] for i, v in enumerate(versions)}
    for lane, (name, s) in enumerate(services):
        base = top + MARKS + LANE * (lane + 1) - 10
        asked = s.get("qps_asked") or 0
        peak = max(
            (sum(sec["versions"].values()) + sec["errors"] for sec in s["timeline"]),
            default=1,
        )
        peak = nice(max(peak, asked, 1))
        scale = (LANE - 40) / peak
        out.append(f'<text x="4" y="{base - LANE + 30}">{escape(name)}</text>')
        # The y-axis: answers per second, from 0 to the top of the lane's scale.
        out.append(
            f'<line x1="{LEFT}" y1="{base - peak * scale:.1f}" x2="{LEFT}" y2="{base}" '
            'stroke="#999"/>'
        )
        for tick in (0, peak / 2, peak):
            y_tick = base - tick * scale
            out.append(
                f'<line x1="{LEFT - 4}" y1="{y_tick:.1f}" x2="{LEFT}" y2="{y_tick:.1f}" '
                f'stroke="#999"/><text x="{LEFT - 6}" y="{y_tick + 4:.1f}" '
                f'text-anchor="end" fill="#666">{tick:.0f}</text>'
            )
        out.append(
            f'<text x="4" y="{base - LANE + 44}" fill="#666" font-size="10">answers/s</text>'
        )
        for sec in s["timeline"]:
            t = s["started_unix_ms"] + sec["second"] * 1000
            if t + 1000 < start or t > end:
                continue
            left, right = max(x(t), LEFT), min(x(t + 1000), WIDTH - RIGHT)
            y = base
            for version in versions:
                n = sec["versions"].get(version, 0)
                if n:
                    h = n * scale
                    y -= h
                    out.append(
                        f'<rect x="{left:.1f}" y="{y:.1f}" width="{max(right - left - 1, 1):.1f}" '
                        f'height="{h:.1f}" fill="{colour_of[version]}"/>'
                    )
        for e in s["error_events"]:
            if start <= e["unix_ms"] <= end:
                out.append(
                    f'<rect x="{x(e["unix_ms"]) - 1.5:.1f}" y="{base - LANE + 36}" width="3" '
                    f'height="{LANE - 46}" fill="#d62728" opacity="0.8">'
                    f"<title>{escape(str(e['code']))} {escape(e['error'])}</title></rect>"
                )
        if asked:
            y_asked = base - asked * scale
            out.append(
                f'<line x1="{LEFT}" y1="{y_asked:.1f}" x2="{WIDTH - RIGHT}" y2="{y_asked:.1f}" '
                'stroke="#333" stroke-dasharray="6,3"/>'
            )
        errors = s["errors"]
        reached = s.get("qps_reached")
        rate = (
            f", {reached:.0f} of {asked:.0f} answers/s asked"
            if asked and reached is not None
            else ""
        )
        out.append(
            f'<text x="{WIDTH - RIGHT}" y="{base - LANE + 30}" text-anchor="end" '
            f'fill="{"#d62728" if errors else "#333"}">{s["requests"]} requests, '
            f"{errors} failed{escape(rate)}</text>"
        )
    legend = "".join(
        f'<rect x="{LEFT + 110 * i}" y="{height - 14}" width="10" height="10" '
        f'fill="{colour_of[v]}"/><text x="{LEFT + 110 * i + 14}" y="{height - 5}">'
        f"{escape(v)}</text>"
        for i, v in enumerate(versions)
    )
    out.append(legend)
    out.append("</svg>")
    return "\n".join(out)
