"""The timeline picture of a run: one time axis, a row per host with its tasks as bars coloured by
status, play and stage boundaries, each node's version changes as markers, and a row per probe with
its failure intervals. PNG and SVG, drawn with matplotlib through a bare `Figure` (the Agg renderer
for the PNG, no pyplot and so no global backend or figure registry touched).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from harness.report.run_report import RunReport
    from harness.upgrade.timeline import TaskRecord

COLOURS = {
    "failed": "#cf222e",
    "unreachable": "#82071e",
    "ignored": "#f5a3a3",  # failed under ignore_errors: not a failure of the run
    "changed": "#d4a72c",
    "ok": "#2da44e",
    "skipped": "#d0d7de",
}
PROBE_COLOUR = "#cf222e"
# A node's state as the API showed it, drawn as a band under its task bars.
NODE_STATE_COLOURS = {"cordoned": "#6e7781", "not ready": "#bc4c00"}
CHANGE_COLOUR = "#0969da"
# Bars narrower than this share of the axis would not show; they are drawn this wide.
MIN_WIDTH = 0.0012
# Play labels closer than this share of the axis to the previous label are left out (Kubespray's
# boilerplate plays come in bursts); their boundary lines stay.
LABEL_GAP = 0.012
WIDTH_IN, ROW_IN, LEFT_IN, RIGHT_IN, TOP_IN, BOTTOM_IN = 14.0, 0.6, 1.4, 0.3, 1.7, 0.9
DPI = 100
RASTER_ABOVE = 2000  # task bars (after merging) above which the SVG carries them as a picture


def _span(r: TaskRecord) -> tuple[datetime, datetime] | None:
    from harness.report.run_report import parse_time

    start, end = parse_time(r.start), parse_time(r.end)
    if end is None:
        return None
    if start is None:
        start = end - timedelta(seconds=r.duration or 0.0)
    return start, end


def _num(t: datetime) -> float:
    """matplotlib's date number (days since its epoch) of a time. Computed here: `dates.date2num` per
    datetime took a quarter of a large run's plotting time (and carries no type hints)."""
    return (t.timestamp() - _epoch()) / 86400.0


@functools.cache
def _epoch() -> float:
    from matplotlib import dates as mdates

    epoch: str = mdates.get_epoch()  # type: ignore[no-untyped-call]
    return datetime.fromisoformat(epoch).replace(tzinfo=UTC).timestamp()


def _status(r: TaskRecord) -> str:
    return "ignored" if r.ignored else r.status if r.status in COLOURS else "ok"


def _merged(tasks: list[tuple[float, float, str]], pixel: float) -> dict[str, list[tuple[float, float]]]:
    """status -> (start, width) bars of one host: tasks one after another with the same status and less
    than a pixel apart drawn as one bar (what the picture shows either way, with far fewer shapes)."""
    out: dict[str, list[tuple[float, float]]] = {}
    last: list[float] | None = None
    last_status = ""
    for start, end, status in sorted(tasks):
        if last is not None and status == last_status and start <= last[1] + pixel:
            last[1] = max(last[1], end)
            continue
        if last is not None:
            out.setdefault(last_status, []).append((last[0], last[1] - last[0]))
        last, last_status = [start, end], status
    if last is not None:
        out.setdefault(last_status, []).append((last[0], last[1] - last[0]))
    return out


def _hosts(report: RunReport) -> list[str]:
    hosts = {r.host for s in report.stages for r in s.records if r.host}
    hosts |= {c.node for c in report.changes} | {n.node for n in report.node_spans}
    return sorted(hosts)


def _labelled(xs: Sequence[tuple[float, str]], width: float) -> Iterable[tuple[float, str]]:
    last = None
    for x, text in xs:
        if last is None or x - last >= LABEL_GAP * width:
            last = x
            yield x, text


def plot(report: RunReport, png: Path, svg: Path) -> tuple[Path, Path]:
    """Draw the run's timeline into `png` and `svg`; returns both paths."""
    import matplotlib
    from matplotlib import dates as mdates
    from matplotlib.artist import Artist
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    hosts = _hosts(report)
    probes = sorted({i.probe for i in report.intervals})
    rows = [*hosts, *(f"probe {p}" for p in probes)] or ["(no task ran)"]
    y = {name: len(rows) - 1 - i for i, name in enumerate(rows)}  # first row on top

    times: list[datetime] = []
    tasks: dict[str, list[tuple[float, float, str]]] = {h: [] for h in hosts}
    for stage in report.stages:
        for r in stage.records:
            span = _span(r)
            if span is None or r.host not in tasks:
                continue
            times += span
            start, end = (_num(t) for t in span)
            tasks[r.host].append((start, end, _status(r)))
    times += [c.at for c in report.changes] + [t for i in report.intervals for t in (i.start, i.end)]
    times += [t for n in report.node_spans if n.node in tasks for t in (n.start, n.end)]
    if not times:
        now = datetime.now(UTC)
        times = [now, now + timedelta(minutes=1)]
    lo, hi = _num(min(times)), _num(max(times))
    width = max(hi - lo, 1.0 / 86400)
    min_w = MIN_WIDTH * width
    bars = {h: _merged(ts, width / ((WIDTH_IN - LEFT_IN - RIGHT_IN) * DPI)) for h, ts in tasks.items()}
    # A very long run's thousands of bars as a picture inside the SVG: drawn one by one, they made the
    # SVG slow (seconds) and large for no visible difference.
    raster = sum(len(spans) for by in bars.values() for spans in by.values()) > RASTER_ABOVE

    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "kubespray-upgrade-harness",
                                "font.size": 8}):
        # Fixed margins in inches (row labels left, play labels on top, legend below): a layout engine
        # measured every text twice per format and took a third of the plotting time.
        height = TOP_IN + BOTTOM_IN + ROW_IN * len(rows)
        fig = Figure(figsize=(WIDTH_IN, height))
        fig.subplots_adjust(left=LEFT_IN / WIDTH_IN, right=1 - RIGHT_IN / WIDTH_IN, top=1 - TOP_IN / height,
                            bottom=BOTTOM_IN / height)
        ax = fig.add_subplot()
        for host, by_status in bars.items():
            for status, spans in by_status.items():
                ax.broken_barh([(s, max(w, min_w)) for s, w in spans], (y[host] - 0.32, 0.44),
                               facecolors=COLOURS[status], linewidth=0, rasterized=raster)
        for probe in probes:
            spans = [(_num(i.start), _num(i.end) - _num(i.start))
                     for i in report.intervals if i.probe == probe]
            ax.broken_barh([(s, max(w, min_w)) for s, w in spans], (y[f"probe {probe}"] - 0.3, 0.6),
                           facecolors=PROBE_COLOUR, alpha=0.75, hatch="///", edgecolor="white", linewidth=0)

        # Cordoned and not-Ready spans under each node's bars: the drain order as the API saw it.
        for state, colour in NODE_STATE_COLOURS.items():
            for host in hosts:
                spans = [(_num(n.start), _num(n.end) - _num(n.start)) for n in report.node_spans
                         if n.node == host and n.state == state]
                if spans:
                    lower = y[host] - 0.44 if state == "cordoned" else y[host] - 0.38
                    ax.broken_barh([(s, max(w, min_w)) for s, w in spans], (lower, 0.06), facecolors=colour, linewidth=0)

        # Version changes: one marker per node and sampling time, labelled with what moved to what.
        grouped: dict[tuple[str, datetime], list[str]] = {}
        for c in report.changes:
            grouped.setdefault((c.node, c.at), []).append(f"{c.component} {c.new or 'gone'}")
        for (node, at), what in sorted(grouped.items(), key=lambda kv: kv[0][1]):
            if node not in y:
                continue
            x = _num(at)
            ax.plot([x], [y[node] + 0.3], marker="D", markersize=5, color=CHANGE_COLOUR, linestyle="none")
            label = ", ".join(what) if len(what) <= 2 else f"{what[0]} +{len(what) - 1}"
            ax.annotate(label, (x, y[node] + 0.3), xytext=(4, 0), textcoords="offset points", fontsize=7,
                        va="center", color=CHANGE_COLOUR)

        # Stage and play boundaries, labelled above the rows.
        top = len(rows) - 0.45
        stage_starts = []
        for stage in report.stages:
            stage_spans = [s for s in (_span(r) for r in stage.records) if s is not None]
            if stage_spans:
                stage_starts.append((_num(min(s[0] for s in stage_spans)), stage.purpose))
        for x, _ in stage_starts:
            ax.axvline(x, color="#444", linewidth=1.2)
        for x, purpose in _labelled(stage_starts, width):
            ax.text(x, -0.78, f" {purpose}", fontsize=8, fontweight="bold", va="bottom", ha="left", color="#444")
        play_starts = [(_num(p.start), p.play) for p in report.plays]
        for x, _ in play_starts:
            ax.axvline(x, color="#999", linewidth=0.5, linestyle=":")
        for x, play in _labelled(play_starts, width):
            ax.text(x, top, play if len(play) <= 48 else play[:47] + "…", rotation=60, fontsize=6.5,
                    va="bottom", ha="left", color="#555", rotation_mode="anchor")

        ax.set_yticks([y[r] for r in rows], rows)
        ax.set_ylim(-0.85, len(rows) - 0.4)
        ax.set_xlim(lo - 0.01 * width, hi + 0.06 * width)  # room for the last marker's label
        ax.xaxis.set_major_formatter(mdates.DateFormatter("%H:%M:%S", tz=UTC))  # type: ignore[no-untyped-call]
        ax.set_xlabel("time (UTC)")
        ax.grid(axis="x", color="#eee")
        ax.set_axisbelow(True)
        fig.suptitle(f"{report.scenario}: {report.status}", x=0.01, y=0.995, ha="left", va="top", fontsize=10,
                     fontweight="bold", color=COLOURS["failed"] if report.failed else "#222")
        handles: list[Artist] = [Patch(color=COLOURS[s], label=s) for s in ("ok", "changed", "failed", "unreachable", "skipped")]
        handles.append(Line2D([], [], marker="D", color=CHANGE_COLOUR, linestyle="none", label="version change"))
        if probes:
            handles.append(Patch(facecolor=PROBE_COLOUR, alpha=0.75, hatch="///", label="probe failing"))
        handles += [Patch(color=NODE_STATE_COLOURS[st], label=f"node {st} (API)")
                    for st in NODE_STATE_COLOURS if any(n.state == st for n in report.node_spans)]
        fig.legend(handles=handles, loc="lower center", ncol=len(handles), frameon=False, fontsize=7)
        fig.savefig(png, dpi=DPI, format="png")
        fig.savefig(svg, format="svg", metadata={"Date": None})
    return png, svg
