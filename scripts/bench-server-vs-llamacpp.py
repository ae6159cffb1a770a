#!/usr/bin/env python3
"""Concurrent streaming clients against `callm serve` and llama.cpp's `llama-server -np N`.

Same GGUF, threads, prompt and generation length for both servers; for each N the two servers
run back to back (one at a time, so they never share the CPU), each started fresh, warmed with
one request, then given N simultaneous streaming `/v1/completions` requests. Reported per
server and N: aggregate decode tokens/s (tokens after each client's first, over the span from
the first client's first token to the last client's last), mean per-client decode tokens/s,
time to first token and inter-token latency (p50/p95), as a markdown table (BENCHMARKS.md).

The prompt asks the model to go on counting ("1, 2, 3, ..."), greedy, so that both engines
generate the full `--n` tokens without an early end; a client that ends early is reported
with the tokens it got (the table's `tokens` column shows the total).

Repetitions are whole sweeps over the client counts, so that each repetition's counts run
within minutes of each other: on a machine whose speed drifts, the ratio of N clients to the
first count is then taken within one sweep. A summary after the table gives, per server and N,
the median aggregate over the repetitions and the median of those per-sweep ratios (nearest
rank: the lower of two). Without
`--llama-server` only callm runs (the ratios need no peer).

`--repeat-ttft K` measures prefix reuse instead (issue 16, item 2): one client, a short chat
(41 prompt tokens with Qwen's template) sent once cold and then K times again, and a
follow-up turn (the chat, its answer and a new question) K times; the time to the first
streamed token of each, median over the K, for both servers (llama-server's `cache_prompt`, on
by default, is its prefix reuse).

Standard library only. Usage:
  scripts/bench-server-vs-llamacpp.py --callm target/release/callm \
      [--llama-server path/to/llama-server] --model ~/.cache/callm/models/X.gguf \
      [--threads 2] [--clients 1,2,4,8] [--n 128] [--reps 1] [--repeat-ttft K]
"""

import argparse
import http.client
import json
import os
import signal
import subprocess
import sys
import threading
import time

PROMPT = "Count from 1 to 1000, separated by commas: 1, 2, 3, 4, 5, 6, 7, 8,"


def quantile(values, q):
    """Nearest-rank quantile (0 for no values)."""
    if not values:
        return 0.0
    v = sorted(values)
    rank = max(1, int(-(-q * len(v) // 1)))
    return v[min(rank, len(v)) - 1]


def post_stream(port, body, timeout=600):
    """Yields (arrival time, parsed event) for each SSE `data:` event of a streaming POST."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    conn.request(
        "POST",
        "/v1/completions",
        body=json.dumps(body),
        headers={"Content-Type": "application/json"},
    )
    resp = conn.getresponse()
    if resp.status != 200:
        raise RuntimeError(f"HTTP {resp.status}: {resp.read()[:300]!r}")
    while True:
        line = resp.readline()
        if not line:
            break
        line = line.strip()
        if not line.startswith(b"data:"):
            continue
        data = line[5:].strip()
        if data == b"[DONE]":
            break
        yield time.perf_counter(), json.loads(data)
    conn.close()


def one_client(port, n, out, idx, start_barrier):
    body = {
        "model": "m",
        "prompt": PROMPT,
        "max_tokens": n,
        "temperature": 0,
        "stream": True,
    }
    start_barrier.wait()
    submitted = time.perf_counter()
    stamps = []
    try:
        for t, ev in post_stream(port, body):
            choices = ev.get("choices") or []
            if choices and choices[0].get("text"):
                stamps.append(t)
    except Exception as e:  # reported, not fatal: the table shows what arrived
        print(f"client {idx}: {e}", file=sys.stderr)
    out[idx] = (submitted, stamps)


def run_clients(port, clients, n):
    out = [None] * clients
    barrier = threading.Barrier(clients)
    threads = [
        threading.Thread(target=one_client, args=(port, n, out, i, barrier))
        for i in range(clients)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ttft, gaps, rates = [], [], []
    first, last, decoded = None, None, 0
    for submitted, stamps in out:
        if not stamps:
            continue
        ttft.append(stamps[0] - submitted)
        first = stamps[0] if first is None else min(first, stamps[0])
        last = stamps[-1] if last is None else max(last, stamps[-1])
        decoded += len(stamps) - 1
        if len(stamps) > 1:
            rates.append((len(stamps) - 1) / max(stamps[-1] - stamps[0], 1e-9))
        gaps += [b - a for a, b in zip(stamps, stamps[1:])]
    span = max((last or 0) - (first or 0), 1e-9)
    return {
        "aggregate": decoded / span if decoded else 0.0,
        "per_client": sum(rates) / max(len(rates), 1),
        "ttft": (quantile(ttft, 0.5), quantile(ttft, 0.95)),
        "itl": (quantile(gaps, 0.5), quantile(gaps, 0.95)),
        "tokens": decoded + len(ttft),
    }


def wait_ready(port, proc, timeout=300):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}: {' '.join(proc.args)}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/health")
            if conn.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.25)
    raise RuntimeError("server not ready in time")


def start(engine, args, clients, port):
    ctx = 1024
    if engine == "callm":
        cmd = [args.callm, "serve", "-m", args.model, "-t", str(args.threads),
               "--port", str(port), "--max-concurrent", str(clients), "--ctx", str(ctx),
               "--served-model-name", "m"]
    else:
        cmd = [args.llama_server, "-m", args.model, "-t", str(args.threads),
               "--port", str(port), "-np", str(clients), "-c", str(ctx * clients),
               "--no-webui"]
    log = open(os.devnull, "w")
    proc = subprocess.Popen(cmd, stdout=log, stderr=log, start_new_session=True)
    try:
        wait_ready(port, proc)
    except Exception:
        stop(proc)
        raise
    return proc


def stop(proc):
    # A server that already exited (a crash at start-up) has no process group left to signal.
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=20)
    except ProcessLookupError:
        proc.wait()
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()


CHAT = [{"role": "user", "content": "What is the capital of France? Answer in one word."}]


def chat_ttft(port, messages, max_tokens=8):
    """Seconds from sending a streaming chat request to its first content token, and the
    answer's text."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    body = {"model": "m", "messages": messages, "max_tokens": max_tokens, "temperature": 0,
            "stream": True}
    sent = time.perf_counter()
    conn.request("POST", "/v1/chat/completions", body=json.dumps(body),
                 headers={"Content-Type": "application/json"})
    resp = conn.getresponse()
    if resp.status != 200:
        raise RuntimeError(f"HTTP {resp.status}: {resp.read()[:300]!r}")
    first, text = None, ""
    while True:
        line = resp.readline()
        if not line:
            break
        line = line.strip()
        if not line.startswith(b"data:"):
            continue
        data = line[5:].strip()
        if data == b"[DONE]":
            break
        choices = json.loads(data).get("choices") or []
        piece = (choices[0].get("delta") or {}).get("content") if choices else None
        if piece:
            first = first or time.perf_counter()
            text += piece
    conn.close()
    if first is None:
        raise RuntimeError("no content token came back")
    return first - sent, text


def repeat_ttft(args, engines):
    """The `--repeat-ttft` table: cold, same chat again, and next-turn time to first token."""
    print(f"# {os.path.basename(args.model)}, -t {args.threads}, one client, "
          f"{args.repeat_ttft} repeats, load {load()}")
    print("| engine | cold TTFT s | same chat again: TTFT s (median) | next turn: TTFT s (median) |")
    print("| --- | ---: | ---: | ---: |")
    for engine in engines:
        proc = start(engine, args, 1, args.port)
        try:
            # callm builds its constrained-decoding vocabulary on another thread for a moment
            # after it answers /health (0.3 s for Qwen's 151k tokens): not a prefill cost.
            time.sleep(2)
            # Warm-up with another system message and question: the first timed request
            # shares only the template's first tokens with it, and prefills cold.
            chat_ttft(args.port, [{"role": "system", "content": "Warm-up."},
                                  {"role": "user", "content": "Say hi."}])
            cold, answer = chat_ttft(args.port, CHAT)
            again = [chat_ttft(args.port, CHAT)[0] for _ in range(args.repeat_ttft)]
            turn = CHAT + [{"role": "assistant", "content": answer},
                           {"role": "user", "content": "And of Italy?"}]
            nxt = [chat_ttft(args.port, turn)[0] for _ in range(args.repeat_ttft)]
        finally:
            stop(proc)
        print(f"| {engine} | {cold:.3f} | {quantile(again, 0.5):.3f} | {quantile(nxt, 0.5):.3f} |",
              flush=True)


def load():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--callm", required=True)
    ap.add_argument("--llama-server", help="llama.cpp's server; without it only callm runs")
    ap.add_argument("--model", required=True)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--clients", default="1,2,4,8")
    ap.add_argument("--n", type=int, default=128)
    ap.add_argument("--reps", type=int, default=1)
    ap.add_argument("--port", type=int, default=18180)
    ap.add_argument("--repeat-ttft", type=int, metavar="K",
                    help="measure prefix reuse (time to first token of a repeated chat) instead")
    args = ap.parse_args()
    counts = [int(c) for c in args.clients.split(",")]
    if not counts or min(counts) < 1 or args.reps < 1:
        sys.exit("--clients takes positive counts and --reps at least 1")
    engines = ["callm"] + (["llama-server"] if args.llama_server else [])
    if args.repeat_ttft is not None:
        if args.repeat_ttft < 1:
            sys.exit("--repeat-ttft takes at least 1")
        repeat_ttft(args, engines)
        return
    name = os.path.basename(args.model)
    print(f"# {name}, -t {args.threads}, {args.n} tokens per client, load {load()}")
    print("| engine | clients | rep | aggregate t/s | per client t/s | TTFT p50/p95 s "
          "| ITL p50/p95 ms | tokens |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    # aggregate[engine][clients] = one value per repetition
    aggregate = {e: {c: [] for c in counts} for e in engines}
    for rep in range(1, args.reps + 1):
        for clients in counts:
            for engine in engines:
                proc = start(engine, args, clients, args.port)
                try:
                    run_clients(args.port, 1, 8)  # warm-up
                    r = run_clients(args.port, clients, args.n)
                finally:
                    stop(proc)
                if r["tokens"] == 0:
                    sys.exit(f"{engine} with {clients} clients generated nothing")
                aggregate[engine][clients].append(r["aggregate"])
                print(f"| {engine} | {clients} | {rep} | {r['aggregate']:.2f} "
                      f"| {r['per_client']:.2f} | {r['ttft'][0]:.3f} / {r['ttft'][1]:.3f} "
                      f"| {r['itl'][0] * 1e3:.1f} / {r['itl'][1] * 1e3:.1f} | {r['tokens']} |",
                      flush=True)
    print(f"# load after: {load()}")
    base = counts[0]
    print()
    print(f"| engine | clients | median aggregate t/s | median ratio to {base} client(s), "
          "per sweep |")
    print("| --- | ---: | ---: | ---: |")
    for engine in engines:
        for clients in counts:
            runs = aggregate[engine][clients]
            ratios = [x / b for x, b in zip(runs, aggregate[engine][base]) if b > 0]
            ratio = f"{quantile(ratios, 0.5):.2f}x" if ratios else "-"
            print(f"| {engine} | {clients} | {quantile(runs, 0.5):.2f} | {ratio} |")


if __name__ == "__main__":
    main()
