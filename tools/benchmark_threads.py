"""Throughput of one Artifact shared by N threads against one Artifact per thread.

    python tools/benchmark_threads.py ARTIFACT.tflite [--threads 8] [--calls 400] [--runtime litert]

Prints calls/s side by side for: one thread; N threads sharing one object (its
interpreter pool, the default); N threads sharing one object limited to one interpreter
(``max_interpreters=1``, i.e. a lock: calls take turns); N threads each with their own
object. Each call is ``run([text])`` on one typical utterance (batch 1, as a server
answers one request). The rows run interleaved, ``--rounds`` times, and the median is
shown, so a busy machine slows every row alike.
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time

from edge_pqrnn.artifact import Artifact

TEXT = "show me flights from boston to denver tomorrow morning"


def throughput(models: list[Artifact], threads: int, calls: int) -> float:
    """Calls per second of ``threads`` threads, thread i using ``models[i % len(models)]``."""
    start = threading.Barrier(threads + 1)

    def work(model: Artifact) -> None:
        start.wait()
        for _ in range(calls):
            model.run([TEXT])

    workers = [threading.Thread(target=work, args=(models[i % len(models)],)) for i in range(threads)]
    for w in workers:
        w.start()
    start.wait()
    t0 = time.perf_counter()
    for w in workers:
        w.join()
    return threads * calls / (time.perf_counter() - t0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("artifact")
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--calls", type=int, default=400, help="calls per thread per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--runtime", default="litert", choices=("litert", "tflite"))
    parser.add_argument("--max-interpreters", type=int, default=None,
                        help="the shared object's pool limit (default: Artifact.load's)")
    args = parser.parse_args()

    shared = Artifact.load(args.artifact, runtime=args.runtime, max_interpreters=args.max_interpreters)
    locked = Artifact.load(args.artifact, runtime=args.runtime, max_interpreters=1)
    own = [Artifact.load(args.artifact, runtime=args.runtime) for _ in range(args.threads)]
    rows = {"1 thread, 1 object": ([shared], 1),
            f"{args.threads} threads, 1 shared object (pool)": ([shared], args.threads),
            f"{args.threads} threads, 1 shared object, 1 interpreter (lock)": ([locked], args.threads),
            f"{args.threads} threads, 1 object each": (own, args.threads)}
    for models, threads in rows.values():  # warm-up: the pool opens its interpreters
        throughput(models, threads, 20)
    results: dict[str, list[float]] = {name: [] for name in rows}
    for _ in range(args.rounds):
        for name, (models, threads) in rows.items():
            results[name].append(throughput(models, threads, args.calls if threads > 1 else args.calls * 2))
    base = statistics.median(results[f"{args.threads} threads, 1 object each"])
    print(f"{args.artifact} in {args.runtime}, batch 1, median of {args.rounds} rounds "
          f"(shared pool opened {shared._pool.opened} interpreters)")
    for name, values in results.items():
        value = statistics.median(values)
        print(f"  {value:>9,.0f} calls/s  {value / base:5.2f}x of one object per thread  {name}")
    for model in [shared, locked, *own]:
        model.close()


if __name__ == "__main__":
    main()
