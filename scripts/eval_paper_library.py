#!/usr/bin/env python
"""Does the library help the default student? Measured on the paper's airline data.

Library: the paper's stage-0 strategies (compact forms derived by the rule-based deriver, the
teacher's reply as exemplar, built in memory only). Evaluation: its stage-1 contexts, split by
conversation into a dev part (mode chosen there) and a held-out part (the claim is made there).
Every mode is compared with the base student under the same decoding settings; the script exits 1
unless the dev-chosen mode beats the base on held-out cosine (paired bootstrap 95% CI above zero)
with a refund-promise rate no higher than the base's.

    .venv/bin/python scripts/eval_paper_library.py            # all modes, cached generations
    .venv/bin/python scripts/eval_paper_library.py --modes plain,adapt --dev-share 0.3
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from distill.roles.cache import default_cache_path
from distill.tuning.compact import derive_compact
from distill.tuning.data import parse_dev_rows, split_dev
from distill.tuning.run import open_student, write_report
from distill.tuning.tune import Candidate, compare, format_table, generate, make_agent_factory
from edge_agent.files import home_dir
from edge_agent.index import ExactIndex
from edge_agent.library import Strategy
from edge_agent.pack import index_text
from edge_agent.policy import PolicyRule
from edge_agent.retrieval import RetrievalConfig, Retriever

DATA = REPO.parent / "shared" / "data" / "paper-airline"
EMBEDDER_DIR = "embedders/all-minilm-l6-v2-int8-per-channel"
# A refund promised outright; conditional or negated sentences (documentation, "not", "unable") don't count.
REFUND_PROMISE = PolicyRule(
    id="refund-promise",
    kind="forbidden_promise",
    pattern=(
        r"(?:^|(?<=[.!?\n]))[^.!?\n]*?(?<![\w'])(?:(?:i|we)(?:'ll| will| can| am going to|'m going to|"
        r" would be happy to| have|'ve)\s+(?:go ahead and\s+|gone ahead and\s+)?(?:give|issue|issued|"
        r"process|processed|provide|offer|arrange|get|initiate|initiated)\b[^.!?\n]{0,30}\brefund|"
        r"you(?:'ll| will)\s+(?:get|receive|be given)\s+(?:a |your )?(?:full )?refund|"
        r"you(?:'ll| will) be (?:fully )?refunded)(?![^.!?\n]*\b(?:if|once|provided|upon|consider|eligible|"
        r"documentation|certificate))"
    ),
    description="Promising a refund for a non-refundable ticket (policy 1).",
)
# The modes compared; adapt variants are labelled by what they do.
CANDIDATES = [
    Candidate("plain"),
    Candidate("bracketed"),
    Candidate("compact"),
    Candidate("system"),
    Candidate("exemplar"),
    Candidate("exemplar_system"),
    Candidate("demo"),
    Candidate("compact+exemplar"),
    Candidate("system+demo"),
    Candidate("adapt", {"min_score": 0.6}, label="adapt-exemplar"),
    Candidate("adapt", {"min_score": 0.6, "rerank": 1.0}, label="adapt-rerank", retrieval={"top_k": 8}),
    Candidate("adapt", {"min_score": 0.6, "revise": True}, label="adapt-revise"),
]


def load(data: Path) -> tuple[list[Strategy], list, str]:
    rows = [
        json.loads(line)
        for line in (data / "library.jsonl").read_text(encoding="utf-8").splitlines()
        if line.strip()
    ]
    library = [
        Strategy(
            id=r["id"],
            scenario=r["scenario"],
            strategy=r["guideline"],
            compact=derive_compact(r["guideline"]),
            exemplar=r["teacher_reply"],
            source="imported",
        )
        for r in rows
        if r["stage"] == 0
    ]
    items = parse_dev_rows(rows, stage=1, where="library.jsonl")
    prompt = json.loads((data / "domain.json").read_text(encoding="utf-8"))["agent_prompt"].strip()
    return library, items, prompt


def retrieval_embedder():
    path = home_dir() / EMBEDDER_DIR
    if (path / "model.onnx").is_file():
        from edge_agent.embedder import OnnxEmbedder

        return OnnxEmbedder(path)
    from distill.tuning.reference import SentenceEmbedder

    print(
        f"note: {path} not found (run scripts/setup.sh); retrieving with the PyTorch MiniLM", file=sys.stderr
    )
    return SentenceEmbedder()


def write_paper_pack(path: Path, library: list[Strategy], system_prompt: str, rcfg: RetrievalConfig, *,
                     prompting: dict | None = None, facts: list | None = None) -> None:
    """The stage-0 library as a pack (outside the repo); `facts` are FactSpecs the domain declares."""
    from edge_agent.embedder import OnnxEmbedder
    from edge_agent.pack import PackSettings, build_pack

    directory = home_dir() / EMBEDDER_DIR
    settings = PackSettings(
        retrieval={
            "top_k": rcfg.top_k,
            "threshold": rcfg.threshold,
            "query_turns": rcfg.query_turns,
            "budget_tokens": rcfg.budget_tokens,
        },
        prompting=prompting or {},
    )
    build_pack(
        path,
        library,
        OnnxEmbedder(directory),
        embedder_dir=directory,
        settings=settings,
        domain={
            "name": "paper-airline",
            "company": "Yale Airline",
            "system_prompt": system_prompt,
            "rules": [REFUND_PROMISE.__dict__],
            **({"facts": [f.to_json() for f in facts]} if facts else {}),
        },
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument(
        "--modes",
        default="plain,adapt-exemplar,adapt-rerank",
        help="comma-separated candidate names or modes, or 'all' (every mode: hours on 2 cores)",
    )
    ap.add_argument(
        "--dev-share", type=float, default=0.3, help="share of conversations used to choose the mode"
    )
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--query-turns",
        type=int,
        default=1,
        help="recent messages embedded for retrieval (1 = the latest customer message)",
    )
    ap.add_argument("--limit", type=int, default=0, help="use only the first N stage-1 contexts (smoke runs)")
    ap.add_argument("--cache", type=Path, default=None)
    ap.add_argument(
        "--write-pack",
        type=Path,
        default=None,
        help="also build the stage-0 library as a pack here (outside the repo) for `edge-agent tune`",
    )
    ap.add_argument("--out", type=Path, default=None, help="report JSON (a .txt table is written beside it)")
    args = ap.parse_args()
    if not (args.data / "library.jsonl").is_file():
        print(f"paper data not found at {args.data}; pass --data", file=sys.stderr)
        return 2
    library, items, system_prompt = load(args.data)
    if args.limit:
        items = items[: args.limit]
    wanted = {m.strip() for m in args.modes.split(",") if m.strip() and m.strip() != "all"}
    candidates = [
        c for c in CANDIDATES if not wanted or c.name in wanted or c.mode in wanted or c.mode == "plain"
    ]
    dev, test = split_dev(items, args.dev_share, seed=args.seed)
    print(
        f"library {len(library)} stage-0 strategies; {len(items)} stage-1 contexts: dev {len(dev)}, "
        f"held-out {len(test)}; {len(candidates)} candidates",
        file=sys.stderr,
    )

    from distill.tuning.reference import SentenceEmbedder

    embedder = retrieval_embedder()
    rcfg = RetrievalConfig(top_k=2, threshold=0.35, query_turns=args.query_turns, budget_tokens=200)
    vectors = embedder.embed([index_text(s, rcfg.query_turns) for s in library])
    retriever = Retriever(embedder, ExactIndex(vectors), library, vectors, rcfg)
    if args.write_pack:
        write_paper_pack(args.write_pack, library, system_prompt, rcfg)
        print(
            f"pack written to {args.write_pack}; tune it with: edge-agent tune --pack {args.write_pack} "
            f"--dev {args.data / 'library.jsonl'} --stage 1",
            file=sys.stderr,
        )
    student, generation, name = open_student(None, args.cache or default_cache_path())
    factory = make_agent_factory(student, system_prompt, retriever, generation, [REFUND_PROMISE])
    scorer = SentenceEmbedder()
    print(f"student {name}; decoding {generation}", file=sys.stderr)

    done = [0]
    total = (len(dev) + len(test)) * len(candidates)
    t0 = time.perf_counter()

    def tick(n: int) -> None:
        done[0] += n
        if done[0] % 20 == 0 or done[0] == total:
            hits = student.ledger.count(student.name)[1]
            print(
                f"  {done[0]}/{total} replies, {time.perf_counter() - t0:.0f}s (cache hits {hits})",
                file=sys.stderr,
            )

    dev_result = compare(generate(factory, dev, candidates, tick), dev, scorer, [REFUND_PROMISE], args.seed)
    chosen = dev_result.best.candidate
    test_result = compare(
        generate(factory, test, candidates, tick), test, scorer, [REFUND_PROMISE], args.seed
    )
    row = next(r for r in test_result.rows if r.candidate == chosen)
    ok = row.diff.low > 0 and row.violation_rate <= row.base_violation_rate
    out = args.out or home_dir() / "reports" / "eval-paper-library.json"
    extra = {
        "student": name,
        "generation": generation.__dict__,
        "n_dev": len(dev),
        "n_test": len(test),
        "chosen_on_dev": dev_result.best.name,
        "target_met": ok,
        "dev": dev_result.to_json(),
    }
    table = write_report(test_result, out, extra=extra)
    print(f"dev split ({len(dev)} contexts):\n{format_table(dev_result)}\n")
    print(f"held-out split ({len(test)} contexts; '*' = best there):\n{table}\n")
    print(
        f"chosen on dev: {chosen.name}; held-out diff vs base {row.diff}, refund promises "
        f"{row.violation_rate:.1%} vs base {row.base_violation_rate:.1%} -> {'TARGET MET' if ok else 'TARGET MISSED'}"
    )
    print(f"report: {out}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
