"""CPU benchmark of the page's data path: event written -> read -> series -> figures -> JSON for the browser.

Two figures, both through the page's own pure functions (trainer.events.EventWriter, webui.state.CachedRun,
webui.charts.loss_figure / memory_figure / lr_gradnorm_figure / throughput_figure, plotly's to_json, which
is what Gradio sends):

1. latency of one new event: the server-side work from a `log` event appended to events.jsonl to the
   figures' JSON, on a run that already has 1,000 steps; plus the page timer's interval
   (webui.tabs.monitor.TIMER_SECONDS): the event waits up to one interval for the next tick. The browser's own
   drawing of the received figure is not included.
2. a 100,000-step run: the first load of all its events (a page opened on a long run), a redraw, the
   size of what is sent, and one tick with one new event at that history.

    python benchmarks/page_charts.py [--steps 100000] [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def log_event(step: int) -> dict:
    loss = 2.0 + 3.0 * math.exp(-step / 20000) + 0.1 * math.sin(step / 7.0)
    return {"step": step, "epoch": step / 5000, "loss": loss, "learning_rate": 2e-4, "grad_norm": 0.5 + (step % 13) / 10,
            "tokens_per_second": 5000.0 + step % 100, "samples_per_second": 4.0,
            "memory": {"device": "cuda:0", "allocated_gb": 20.1, "reserved_gb": 23.7, "peak_gb": 23.9}}


def draw(series) -> tuple[int, dict[str, float]]:
    """All the monitor's figures as JSON; returns total bytes and per-figure seconds."""
    from webui import charts

    timings = {}
    size = 0
    for name, fn in (("loss", lambda: charts.loss_figure(series, 0.6)), ("memory", lambda: charts.memory_figure(series)),
                     ("lr_gradnorm", lambda: charts.lr_gradnorm_figure(series)),
                     ("throughput", lambda: charts.throughput_figure(series))):
        started = time.perf_counter()
        size += len(fn().to_json())
        timings[name] = time.perf_counter() - started
    return size, timings


def write_run(run_dir: Path, steps: int) -> None:
    from trainer.run.events import EventWriter

    writer = EventWriter(run_dir)
    writer.emit("status", status="running")
    writer.emit("plan", plan={"total_steps": steps, "effective_batch_size": 16})
    for step in range(1, steps + 1):
        writer.emit("log", **log_event(step))
        if step % 500 == 0:
            writer.emit("eval", step=step, epoch=step / 5000, eval_loss=2.5)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100_000)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args()

    import plotly

    from trainer.run.events import EventWriter
    from webui.tabs.monitor import TIMER_SECONDS
    from webui.state import EventCache

    result: dict = {"benchmark": "page_charts", "date_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
                    "machine": f"{platform.machine()} CPU ({os.cpu_count()} cores, shared), plotly {plotly.__version__}",
                    "command": f"python benchmarks/page_charts.py --steps {args.steps}",
                    "timer_seconds": TIMER_SECONDS}
    with tempfile.TemporaryDirectory(prefix="tunedeck-page-") as tmp:
        # 1. one new event on a 1,000-step run
        small = Path(tmp) / "small"
        write_run(small, 1000)
        cache = EventCache()
        cached = cache.poll(small)
        draw(cached.series)
        writer = EventWriter(small)
        latencies = []
        for step in range(1001, 1051):
            started = time.perf_counter()
            writer.emit("log", **log_event(step))
            cached = cache.poll(small)
            draw(cached.series)
            latencies.append(time.perf_counter() - started)
        server = statistics.median(latencies)
        result["event_to_figures_json_s"] = {"median": round(server, 4), "max": round(max(latencies), 4),
                                             "history_steps": 1000}
        result["event_to_page_s"] = {"mean": round(TIMER_SECONDS / 2 + server, 3),
                                     "worst": round(TIMER_SECONDS + max(latencies), 3),
                                     "note": "timer wait + server work; browser drawing not included"}
        print(f"new event -> figures JSON: median {server * 1000:.1f} ms; with the {TIMER_SECONDS} s timer: "
              f"mean {TIMER_SECONDS / 2 + server:.2f} s, worst {TIMER_SECONDS + max(latencies):.2f} s", flush=True)

        # 2. a long run
        big = Path(tmp) / "big"
        started = time.perf_counter()
        write_run(big, args.steps)
        result["write_events_s"] = round(time.perf_counter() - started, 2)
        result["events_file_mb"] = round((big / "events.jsonl").stat().st_size / 1e6, 1)
        cache = EventCache()
        started = time.perf_counter()
        cached = cache.poll(big)
        parse = time.perf_counter() - started
        size, timings = draw(cached.series)
        first = time.perf_counter() - started
        redraw_size, redraw_timings = draw(cached.series)
        writer = EventWriter(big)
        ticks = []
        for step in range(args.steps + 1, args.steps + 11):
            started = time.perf_counter()
            writer.emit("log", **log_event(step))
            cached = cache.poll(big)
            draw(cached.series)
            ticks.append(time.perf_counter() - started)
        result["long_run"] = {
            "steps": args.steps, "first_load_parse_s": round(parse, 3), "first_load_total_s": round(first, 3),
            "redraw_s": round(sum(redraw_timings.values()), 3),
            "redraw_by_figure_s": {k: round(v, 4) for k, v in redraw_timings.items()},
            "figures_json_kb": round(size / 1024, 1), "new_event_tick_median_s": round(statistics.median(ticks), 4),
        }
        print(f"{args.steps:,}-step run ({result['events_file_mb']} MB of events): first load {first:.2f} s "
              f"(parse {parse:.2f} s), redraw {sum(redraw_timings.values()):.3f} s, {size / 1024:.0f} KB of figure "
              f"JSON, one new event {statistics.median(ticks) * 1000:.0f} ms", flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "page_charts.json").write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
