#!/usr/bin/env python
"""Runtime benchmark for the device side: prints a table, exits 1 when a target is missed.

Measures, in one run on this machine with the default student (128 new tokens, 6 turns):
retrieval overhead, KV prefix reuse, decode speed vs raw llama-cpp-python, peak RSS of a chat
process (and that torch is never imported), cold start to first token, search at 100k rows, and
decode speed under the automatic thread choice vs every static setting, on an idle machine and with
a CPU-burning helper on one core (started and stopped here), plus what each part of memory costs.
Usage: python scripts/bench_runtime.py [--pack DIR] [--model NAME] [--json OUT] [--rounds N]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
# The settings under test are chosen per child process; none may leak in from the caller.
WAIT_VARS = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "KMP_BLOCKTIME", "EDGE_AGENT_WAIT_POLICY", "EDGE_AGENT_THREADS")
for _var in WAIT_VARS:
    os.environ.pop(_var, None)

CUSTOMER = [
    "Hi, my internet has been down since yesterday evening and I work from home.",
    "I already restarted the router twice. The light is still red.",
    "This is the third outage this month. I want a refund for the whole month.",
    "That is not good enough. Can you send a technician tomorrow morning?",
    "Will I have to pay for the visit? I did nothing wrong.",
    "Okay. Please also note that I want to talk to a supervisor if it happens again.",
]
NEW_TOKENS = 128


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


def run_conversation(agent, gen) -> list[dict]:
    from edge_agent.prompting import GUIDANCE_CLOSE, GUIDANCE_OPEN

    student = agent.student
    student.reset()
    history: list[dict[str, str]] = []
    turns = []
    prev_prompt_len = 0
    prev_guidance = 0
    for i, line in enumerate(CUSTOMER):
        history.append({"role": "user", "content": line})
        reply = agent.reply(history, generation=gen)
        block = reply.prompt[-1]["content"]
        guidance = 0
        if GUIDANCE_OPEN in block:
            guidance = student.count_tokens(block[block.index(GUIDANCE_OPEN) - 2:block.index(GUIDANCE_CLOSE)
                                                  + len(GUIDANCE_CLOSE)])
        prompt_len = reply.usage.prompt_tokens
        added = prompt_len - prev_prompt_len + prev_guidance if i else prompt_len
        turns.append({
            "turn": i + 1, "prompt": prompt_len, "evaluated": reply.usage.evaluated_prompt_tokens, "added": added,
            "guidance_tokens": guidance, "hits": [h.strategy.id for h in reply.hits],
            "retrieval_ms": reply.timings["retrieval_ms"], "ttft_ms": reply.timings.get("ttft_ms", 0.0),
            "turn_ms": reply.timings["total_ms"], "decode_tps": reply.timings.get("decode_tps", 0.0),
            "completion": reply.usage.completion_tokens, "messages": reply.prompt,
        })
        prev_prompt_len, prev_guidance = prompt_len, guidance
        history.append({"role": "assistant", "content": reply.text})
    return turns


def fresh_ttft(student, messages) -> float:
    """Time to first token for the same prompt in an empty context (nothing reused)."""
    from edge_agent.backends import GenerationConfig

    student.reset()
    stream = student.stream(messages, GenerationConfig(max_tokens=1))
    for _ in stream:
        pass
    return float(stream.result.timings["ttft_ms"])


def ours_decode_tps(student, messages, gen) -> float:
    """Decode rate through edge-agent's student on a prompt, empty context."""
    student.reset()
    stream = student.stream(messages, gen)
    for _piece in stream:
        pass
    return float(stream.result.timings["decode_tps"])


def raw_decode_tps(model_path: str, messages, student, n_ctx: int, gen, rounds: int = 5) -> tuple[float, float]:
    """Decode rate of plain llama-cpp-python on the same GGUF and prompt (no edge-agent code),
    interleaved with edge-agent's own so machine noise hits both alike: (ours, raw) medians."""
    from llama_cpp import Llama

    tokens, _ = student.tokenize_messages(messages)
    # The settings the student runs with (its current thread count, its KV cache type): only the
    # wrapper differs. The process's OpenMP wait policy is shared by both.
    threads = student.threads.current
    kv = 8 if student.kv_cache == "q8_0" else None
    llm = Llama(model_path=model_path, n_ctx=n_ctx, n_threads=threads, n_threads_batch=threads, verbose=False,
                flash_attn=kv is not None, type_k=kv, type_v=kv)
    rates = []
    ours = []
    for _ in range(rounds):
        ours.append(ours_decode_tps(student, messages, gen))
        llm.reset()
        first = None
        n = 0
        start = time.perf_counter()
        for _chunk in llm.create_completion(prompt=tokens, max_tokens=gen.max_tokens, temperature=gen.temperature,
                                            top_p=gen.top_p, top_k=gen.top_k, repeat_penalty=gen.repeat_penalty,
                                            stop=list(gen.stop), stream=True):
            n += 1
            if first is None:
                first = time.perf_counter()
        end = time.perf_counter()
        if first and n > 1:
            rates.append((n - 1) / (end - first))
        del start
    del llm
    return statistics.median(ours), statistics.median(rates)


CHILD = r"""
import os, sys, time, resource
t0 = float(sys.argv[1])
from edge_agent.cli import main
sys.argv = ["edge-agent", "chat"] + sys.argv[2:]
try:
    main()
except SystemExit:
    pass
# VmHWM, not ru_maxrss: the latter survives fork+exec and would report the benchmark's own peak.
hwm = int(open("/proc/self/status").read().split("VmHWM:")[1].split()[0])
sys.stderr.write("\nBENCH torch_imported=%s maxrss_kb=%d\n" % ("torch" in sys.modules, hwm))
"""


def chat_process(pack: str | None, model: str | None, lines: list[str], env_extra: dict[str, str],
                 mode: str = "compact") -> dict:
    """Run `edge-agent chat` as a fresh process; time to first agent token, peak RSS, torch check."""
    args = []
    if pack:
        args += ["--pack", pack]
    if model:
        args += ["--model", model]
    args += ["--max-tokens", str(NEW_TOKENS), "--mode", mode]
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **env_extra}
    start = time.time()
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(start), *args], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    assert proc.stdin and proc.stdout
    proc.stdin.write(("\n".join(lines) + "\n").encode())
    proc.stdin.close()
    first_token = None
    buf = b""
    while True:
        ch = proc.stdout.read(1)
        if not ch:
            break
        buf += ch
        if first_token is None and buf.endswith(b"agent> "):
            nxt = proc.stdout.read(1)
            first_token = time.time() - start
            buf += nxt
    assert proc.stderr
    err = proc.stderr.read()
    proc.wait(timeout=600)
    wall = time.time() - start
    info = {"cold_start_s": first_token, "wall_s": wall, "rc": proc.returncode}
    for line in err.decode(errors="replace").splitlines():
        if line.startswith("BENCH "):
            for kv in line.split()[1:]:
                k, v = kv.split("=")
                info[k] = v
    if proc.returncode != 0:
        info["stderr"] = err.decode(errors="replace")[-500:]
    return info


DECODE_CHILD = r"""
import json, sys
from edge_agent.agent import Agent
from edge_agent.runtime import RuntimeConfig
pack, model, lines = sys.argv[1], sys.argv[2] or None, json.loads(sys.argv[3])
agent = Agent.from_pack(pack, model, prompting={"mode": "compact"}, generation={"max_tokens": int(sys.argv[4])},
                        runtime=RuntimeConfig.from_env())
history, rates, threads = [], [], []
for line in lines:
    history.append({"role": "user", "content": line})
    reply = agent.reply(history)
    history.append({"role": "assistant", "content": reply.text})
    rates.append(reply.timings["decode_tps"])
    threads.append(agent.student.threads.current)  # the count this reply decoded with
print("BENCH " + json.dumps({"rates": rates, "threads": threads}))
"""

BURNER = r"""
import os, sys, time
os.sched_setaffinity(0, {int(sys.argv[1])})
end = time.monotonic() + float(sys.argv[2])
while time.monotonic() < end:
    pass
"""


def thread_settings() -> list[tuple[str, dict[str, str]]]:
    """The automatic choice first, then every static setting of the issue's table for this machine."""
    n = len(os.sched_getaffinity(0))
    out = [("automatic (default)", {})]
    out += [(f"{n} threads, OMP_WAIT_POLICY=PASSIVE", {"EDGE_AGENT_THREADS": str(n), "OMP_WAIT_POLICY": "PASSIVE"}),
            (f"{n} threads, OMP_WAIT_POLICY=ACTIVE", {"EDGE_AGENT_THREADS": str(n), "OMP_WAIT_POLICY": "ACTIVE"}),
            (f"{n} threads, GOMP_SPINCOUNT=300000", {"EDGE_AGENT_THREADS": str(n), "GOMP_SPINCOUNT": "300000"})]
    if n > 1:
        out.append(("1 thread, OMP_WAIT_POLICY=PASSIVE", {"EDGE_AGENT_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE"}))
    return out


def decode_child(pack: str, model: str | None, env_extra: dict[str, str], turns: int = 2) -> dict:
    """The agent's decode tok/s (median over `turns` compact turns) in a fresh process under `env_extra`."""
    env = {k: v for k, v in os.environ.items() if k not in WAIT_VARS}
    env.update(env_extra)
    out = subprocess.run([sys.executable, "-c", DECODE_CHILD, pack, model or "", json.dumps(CUSTOMER[:turns]),
                          str(NEW_TOKENS)], capture_output=True, text=True, env=env, timeout=600, check=False)
    for line in out.stdout.splitlines():
        if line.startswith("BENCH "):
            got = json.loads(line[6:])
            return {"tps": statistics.median(got["rates"]), "threads": got["threads"]}
    raise RuntimeError(f"decode child failed ({out.returncode}): {out.stderr[-400:]}")


def thread_conditions(pack: str, model: str | None, rounds: int) -> dict[str, dict[str, list[dict]]]:
    """Every setting in fresh processes, idle and with a helper burning one core; settings are
    interleaved (round r starts at setting r) so drifting machine load hits them alike."""
    settings = thread_settings()
    results: dict[str, dict[str, list[dict]]] = {}
    for condition in ("idle", "busy"):
        burner = None
        if condition == "busy":
            core = max(os.sched_getaffinity(0))
            burner = subprocess.Popen([sys.executable, "-c", BURNER, str(core), "1800"])  # ends itself if we die
            time.sleep(1.0)
        try:
            per: dict[str, list[dict]] = {name: [] for name, _ in settings}
            for r in range(rounds):
                for name, env in settings[r % len(settings):] + settings[:r % len(settings)]:
                    per[name].append(decode_child(pack, model, env))
            results[condition] = per
        finally:
            if burner is not None:
                burner.terminate()
                burner.wait(timeout=10)
    return results


def summarise_conditions(results: dict[str, dict[str, list[dict]]]) -> dict[str, dict]:
    """Per condition: each setting's median and range, the best static one, automatic's ratio to it."""
    out = {}
    for condition, per in results.items():
        rows = {name: {"median": statistics.median(r["tps"] for r in runs), "min": min(r["tps"] for r in runs),
                       "max": max(r["tps"] for r in runs),
                       "threads": sorted({t for r in runs for t in r["threads"]})} for name, runs in per.items()}
        names = list(rows)
        best = max(names[1:], key=lambda n: rows[n]["median"])
        out[condition] = {"rows": rows, "best": best, "ratio": rows[names[0]]["median"] / rows[best]["median"]}
    return out


MEM_CHILD = r"""
import json, re, sys
def now():
    s = open("/proc/self/status").read()
    return {k: int(re.search(k + r":\s+(\d+)", s).group(1)) / 1024 for k in ("VmRSS", "RssAnon", "RssFile")}
marks = [("start", now())]
import edge_agent.agent, edge_agent.cli, edge_agent.grounding, edge_agent.planner
marks.append(("Python, numpy, edge_agent, click, jinja2", now()))
import onnxruntime, tokenizers
marks.append(("onnxruntime + tokenizers libraries", now()))
import llama_cpp
marks.append(("llama.cpp libraries", now()))
from edge_agent.pack import load_pack
pack = load_pack(sys.argv[1])
marks.append(("pack (strategies, vectors, library)", now()))
embedder = pack.open_embedder()
embedder.embed(["my internet has been down since yesterday evening"])
marks.append(("ONNX embedder session + one query", now()))
from edge_agent.models import resolve_model
from edge_agent.runtime import RuntimeConfig
from edge_agent.student import LlamaStudent
spec = resolve_model(sys.argv[2] or None)
student = LlamaStudent(spec.path, n_ctx=spec.n_ctx, chat_template=spec.chat_template, runtime=RuntimeConfig.from_env())
marks.append(("GGUF vocabulary and chat template (what a grounded-only chat holds)", now()))
student.load()
marks.append(("GGUF weights: model pages (file) + KV, buffers (anon)", now()))
student.warm_prefix(pack.system_prompt, None)
from edge_agent.backends import GenerationConfig
student.chat([{"role": "system", "content": pack.system_prompt},
              {"role": "user", "content": "My internet is down. " * 60}], GenerationConfig(max_tokens=64))
marks.append(("prefill + decode (compute buffers touched)", now()))
md = student.llm.metadata
arch = md["general.architecture"]
layers, heads = int(md[arch + ".block_count"]), int(md[arch + ".attention.head_count"])
kv_heads = int(md.get(arch + ".attention.head_count_kv", heads))
dim = int(md[arch + ".embedding_length"]) // heads * kv_heads
per_value = 34 / 32 if student.kv_cache == "q8_0" else 2
kv_mb = 2 * layers * student.n_ctx * dim * per_value / 2**20
hwm = int(re.search(r"VmHWM:\s+(\d+)", open("/proc/self/status").read()).group(1)) / 1024
print("BENCH " + json.dumps({"marks": marks, "kv_mb": kv_mb, "kv": student.kv_cache, "n_ctx": student.n_ctx,
                             "hwm": hwm}))
"""


def memory_breakdown(pack: str, model: str | None) -> dict:
    out = subprocess.run([sys.executable, "-c", MEM_CHILD, pack, model or ""], capture_output=True, text=True,
                         timeout=600, check=False)
    for line in out.stdout.splitlines():
        if line.startswith("BENCH "):
            return json.loads(line[6:])
    raise RuntimeError(f"memory child failed ({out.returncode}): {out.stderr[-400:]}")


def _default_pack() -> str:
    from edge_agent.cli import default_pack

    return str(default_pack())


def print_conditions(conditions: dict[str, dict], rounds: int) -> None:
    print(f"\ndecode tok/s of the agent, {NEW_TOKENS} new tokens, compact turns 1-2, median of {rounds} fresh "
          "processes [range]; busy = a helper process burning one core")
    print(f"{'setting':<40} {'idle':>20} {'busy':>20}  threads used (idle / busy)")
    for name in conditions["idle"]["rows"]:
        cells = []
        for cond in ("idle", "busy"):
            r = conditions[cond]["rows"][name]
            cells.append(f"{r['median']:.1f} [{r['min']:.1f}-{r['max']:.1f}]")
        used = " / ".join(",".join(map(str, conditions[c]["rows"][name]["threads"])) for c in ("idle", "busy"))
        print(f"{name:<40} {cells[0]:>20} {cells[1]:>20}  {used}")
    print(f"best static: idle {conditions['idle']['best']}, busy {conditions['busy']['best']}\n")


def report_conditions(conditions: dict[str, dict], rounds: int) -> int:
    """--threads-only: the table and the two g targets; 1 on a miss."""
    print_conditions(conditions, rounds)
    failed = 0
    for cond in ("idle", "busy"):
        ratio = conditions[cond]["ratio"]
        print(f"{'g decode automatic / best static, ' + cond:<40} {ratio:>10.3f} {'>= 0.95':>9}  "
              f"{'yes' if ratio >= 0.95 else 'NO'}")
        failed += ratio < 0.95
    return 1 if failed else 0


def search_bench(n: int = 100_000, dim: int = 384, queries: int = 200) -> dict:
    import numpy as np

    from edge_agent.embedder import l2_normalise
    from edge_agent.index import ExactIndex, build_faiss

    rng = np.random.default_rng(0)
    # Clustered data is closer to real scenario embeddings than uniform noise.
    centers = rng.standard_normal((500, dim)).astype(np.float32)
    vecs = l2_normalise(centers[rng.integers(0, 500, n)] + 0.6 * rng.standard_normal((n, dim)).astype(np.float32))
    qs = l2_normalise(centers[rng.integers(0, 500, queries)] + 0.6 * rng.standard_normal((queries, dim)).astype(np.float32))
    t = time.perf_counter()
    index = build_faiss(vecs, kind="auto")
    build_s = time.perf_counter() - t
    _, exact_ids = ExactIndex(vecs).search(qs, 5)
    times, recall = [], []
    for i in range(queries):
        t = time.perf_counter()
        _, ids = index.search(qs[i], 5)
        times.append((time.perf_counter() - t) * 1e3)
        recall.append(len(set(ids[0]) & set(exact_ids[i])) / 5)
    return {"kind": type(index.raw).__name__, "build_s": build_s, "p50_ms": pct(times, 0.5),
            "recall5": float(np.mean(recall))}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pack", default=None)
    ap.add_argument("--model", default=None)
    ap.add_argument("--json", dest="json_out", default=None)
    ap.add_argument("--mode", default="compact",
                    help="Rendering mode to measure (default compact: the student generates every turn; "
                         "adapt turns that reuse an exemplar skip generation and would flatter the numbers).")
    ap.add_argument("--rounds", type=int, default=3,
                    help="Fresh processes per thread setting and condition (interleaved; default 3).")
    ap.add_argument("--threads-only", action="store_true",
                    help="Measure only the thread settings, idle and busy (the g targets), e.g. to re-measure.")
    args = ap.parse_args()
    if args.threads_only:
        return report_conditions(summarise_conditions(thread_conditions(args.pack or _default_pack(), args.model,
                                                                        args.rounds)), args.rounds)

    from edge_agent.agent import Agent
    from edge_agent.cli import default_pack
    from edge_agent.models import resolve_model

    pack = args.pack or str(default_pack())
    spec = resolve_model(args.model)
    agent = Agent.from_pack(pack, args.model, prompting={"mode": args.mode})
    budget = agent.retrieval.budget_tokens
    gen = agent.generation.merged(max_tokens=NEW_TOKENS)
    run_conversation(agent, gen)  # warm-up (page cache, ONNX session)
    turns = run_conversation(agent, gen)
    last_messages = turns[-1]["messages"]
    fresh = statistics.median(fresh_ttft(agent.student, last_messages) for _ in range(3))
    # Same prompt, same sampling settings, empty context for both: only the wrapper differs.
    ours_tps, raw_tps = raw_decode_tps(str(spec.path), turns[0]["messages"], agent.student, agent.student.n_ctx,
                                       gen)

    child = chat_process(pack, args.model, CUSTOMER, {}, args.mode)
    grounded = chat_process(pack, args.model, CUSTOMER, {}, "grounded")
    memory = memory_breakdown(pack, args.model)
    search = search_bench()
    conditions = summarise_conditions(thread_conditions(pack, args.model, args.rounds))
    rss = int(child.get("maxrss_kb", 10**9)) / 1024
    rss_grounded = int(grounded.get("maxrss_kb", 10**9)) / 1024

    overhead = [t["retrieval_ms"] / t["turn_ms"] for t in turns]
    reuse_ok = all(t["evaluated"] <= t["added"] + 8 for t in turns[1:])
    rows = [
        ("a retrieval overhead p50 (% of turn)", 100 * pct(overhead, 0.5), "<= 3.0", 100 * pct(overhead, 0.5) <= 3.0),
        ("b evaluated <= added+8 at turns 2-6", sum(t["evaluated"] <= t["added"] + 8 for t in turns[1:]), "5 of 5",
         reuse_ok),
        ("b ttft turn 6 / fresh context", turns[-1]["ttft_ms"] / fresh, "<= 0.5", turns[-1]["ttft_ms"] / fresh <= 0.5),
        ("b max injected guidance tokens", max(t["guidance_tokens"] for t in turns), f"<= {budget}",
         max(t["guidance_tokens"] for t in turns) <= budget),
        ("c decode tok/s ours / raw", ours_tps / raw_tps, ">= 0.97", ours_tps / raw_tps >= 0.97),
        (f"d chat process peak RSS, {args.mode} (MB)", rss, "<= 256", rss <= 256),
        ("d chat process peak RSS, grounded (MB)", rss_grounded, "<= 256", rss_grounded <= 256),
        ("d torch imported by chat", child.get("torch_imported"), "False", child.get("torch_imported") == "False"),
        ("e cold start to first token (s)", child["cold_start_s"] or float("nan"), "<= 2.0",
         bool(child["cold_start_s"]) and child["cold_start_s"] <= 2.0),
        ("f search p50 at 100k (ms)", search["p50_ms"], "<= 5.0", search["p50_ms"] <= 5.0),
        ("f recall@5 vs exact", search["recall5"], ">= 0.95", search["recall5"] >= 0.95),
        ("g decode automatic / best static, idle", conditions["idle"]["ratio"], ">= 0.95",
         conditions["idle"]["ratio"] >= 0.95),
        ("g decode automatic / best static, busy", conditions["busy"]["ratio"], ">= 0.95",
         conditions["busy"]["ratio"] >= 0.95),
    ]
    print(f"\nmode {args.mode}  model {spec.name}  pack {pack}  threads {os.cpu_count()}  new tokens {NEW_TOKENS}\n")
    print(f"{'turn':>4} {'prompt':>6} {'eval':>5} {'added':>5} {'guid':>4} {'retr ms':>8} {'ttft ms':>8} "
          f"{'turn ms':>8} {'tok/s':>6} {'gen':>4}  hits")
    for t in turns:
        print(f"{t['turn']:>4} {t['prompt']:>6} {t['evaluated']:>5} {t['added']:>5} {t['guidance_tokens']:>4} "
              f"{t['retrieval_ms']:>8.1f} {t['ttft_ms']:>8.1f} {t['turn_ms']:>8.0f} {t['decode_tps']:>6.1f} "
              f"{t['completion']:>4}  {','.join(t['hits'])}")
    print(f"\nfresh-context ttft for the turn-6 prompt: {fresh:.1f} ms; raw llama-cpp-python decode {raw_tps:.1f} "
          f"tok/s, ours {ours_tps:.1f} tok/s")
    print(f"search: {search['kind']} built in {search['build_s']:.1f} s")
    print(f"chat process wall time, 6 turns: {args.mode} {child['wall_s']:.1f} s, grounded {grounded['wall_s']:.1f} s")
    print(f"\nmemory by part (fresh process; MB resident, anon / file-backed), KV {memory['kv']} at n_ctx "
          f"{memory['n_ctx']} = {memory['kv_mb']:.1f} MB computed:")
    prev = memory["marks"][0][1]
    for name, mark in memory["marks"][1:]:
        print(f"  {mark['VmRSS'] - prev['VmRSS']:+7.1f}  ({mark['RssAnon'] - prev['RssAnon']:+6.1f} / "
              f"{mark['RssFile'] - prev['RssFile']:+6.1f})  {name}")
        prev = mark
    print(f"  {memory['hwm']:7.1f}  peak of this process")
    print_conditions(conditions, args.rounds)
    print(f"{'target':<40} {'measured':>10} {'goal':>9}  ok")
    failed = 0
    for name, value, goal, ok in rows:
        shown = f"{value:.3f}" if isinstance(value, float) else str(value)
        print(f"{name:<40} {shown:>10} {goal:>9}  {'yes' if ok else 'NO'}")
        failed += not ok
    if args.json_out:
        Path(args.json_out).write_text(json.dumps({"turns": [{k: v for k, v in t.items() if k != "messages"}
                                                             for t in turns], "search": search, "child": child,
                                                   "grounded": grounded, "memory": memory, "conditions": conditions,
                                                   "rows": [list(map(str, r)) for r in rows]}, indent=2))
    if child.get("rc") not in (0, None):
        print("chat process failed:", child.get("stderr"))
        failed += 1
    print(f"\n{len(rows) - failed} of {len(rows)} targets met")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
