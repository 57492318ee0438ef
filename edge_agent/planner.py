"""The turn planner: each reply is a checked choice, with a reason, between four routes.

- `exemplar`: a library reply, fitted, when it answers the customer's latest request, every fact it
  `requires` holds here, the fit check, claim check and domain rules pass, and it is not a repeat;
- `generated`: the student writes a draft (only if the pack allows it) that must pass the gate;
- `clarify`: ask for the one missing fact a fitting reply needs, or for more detail;
- `handoff`: offer a person, when asking again would only repeat ourselves.
Pure decisions over plain data (hits, vectors, facts); the agent does the I/O around it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .adapt import AdaptParams, context_text, fit_exemplar, params_from_table
from .conversation import request_of
from .errors import ConfigError
from .facts import Condition, Facts, FactSpec, parse_condition
from .gate import broken_rules, normalised, unestablished_claims
from .library import Strategy
from .policy import PolicyRule
from .retrieval import Hit

__all__ = [
    "ROUTES",
    "Candidate",
    "Plan",
    "Planner",
    "PlannerParams",
    "DEFAULT_REPLIES",
    "fill_template",
    "template_fields",
]

ROUTES = ("exemplar", "generated", "clarify", "handoff")
DEFAULT_REPLIES = {
    "clarify": "Could you tell me a little more about what's happening, so I can help with the right thing?",
    "handoff": "I'm sorry I can't sort this out for you here. I can pass you to a colleague or a supervisor "
    "who can take it further; would you like me to do that?",
    "repeat_ask": "I still need those details before I can go on. Could you check them and send them again?",
    "off_topic": "I'm sorry, I can only help with questions about our service here. Is there anything "
    "about it I can help you with?",
}
_WORD = re.compile(r"[\w'£$-]+")


@dataclass(frozen=True)
class PlannerParams:
    """Knobs of the grounded mode (prompting.params); unknown keys are errors."""

    min_score: float = 0.35  # retrieval cosine (recent window or the latest request) for a candidate
    min_relevance: float = 0.5  # cosine of the latest request to the entry's last customer line or reply
    rerank: float = 1.0  # weight of relevance when ordering candidates
    reply_weight: float = 0.5  # in that relevance, the share of the reply's own closeness to the request
    candidates: int = 16  # entries considered per turn
    generate: bool = False  # may the student write a reply itself (it must still pass the gate)
    fallback: str = "compact"  # rendering mode for the generated route
    max_drop: float = 0.5  # share of an exemplar's sentences the fit check may drop
    exemplar_tokens: int = 200
    on_domain: float = 0.4  # gate: least cosine of a draft to the domain's own replies
    off_topic: float = 0.32  # below this relevance to every entry, a line that adds no fact is off-topic

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> PlannerParams:
        return params_from_table(cls, params, "grounded-mode params")


@dataclass(frozen=True)
class Candidate:
    """One library entry considered this turn, and what was decided about it."""

    id: str
    score: float
    relevance: float
    verdict: str  # "chosen", or why not
    missing: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "score": round(self.score, 3),
            "relevance": round(self.relevance, 3),
            "verdict": self.verdict,
        }
        if self.missing:
            out["missing"] = list(self.missing)
        return out


@dataclass(frozen=True)
class Plan:
    route: str  # one of ROUTES, or "generate" while the student's draft is still to be written
    reason: str
    text: str = ""
    strategy_id: str = ""
    candidates: tuple[Candidate, ...] = ()
    missing: str = ""  # the fact a clarify question asks for


FRESH_SCORE = 0.5  # retrieval score given to an entry added because the latest line established its fact
FRESH_RELEVANCE = 0.9
_CAPITAL = re.compile(r"\b[A-Z][A-Za-z'-]+\b")


def _conditions(strategy: Strategy) -> list[Condition]:
    return [parse_condition(c) for c in strategy.requires]


_FIELD = re.compile(r"\{([a-z][a-z0-9_]*)\}")


def template_fields(text: str) -> list[str]:
    """Facts a reply template fills in: "Your {item_name} shipped on {shipped_date}." -> both names."""
    return list(dict.fromkeys(_FIELD.findall(text)))


def fill_template(text: str, facts: Facts) -> str:
    """The template with each {fact} replaced by its value (true/false facts are not fields)."""
    return _FIELD.sub(lambda m: str(facts.get(m.group(1))), text)


def fresh_customer_facts(history: Sequence[Mapping[str, str]], facts: Facts) -> set[str]:
    """Facts established by the customer's own words in the latest message."""
    last = max((i for i, m in enumerate(history) if m.get("role") == "user"), default=-1)
    mark = f"turn {last + 1}"
    return {
        f
        for f, why in facts.why.items()
        if why.startswith("customer") and why.endswith(mark) and facts.values.get(f) is True
    }


def domain_vocabulary(strategies: Sequence[Strategy], min_entries: int = 3) -> str:
    """Capitalised words used in at least `min_entries` exemplars ("Wi-Fi", the company's name): the
    domain's own vocabulary, which the fit check must not mistake for a name from another conversation."""
    counts: dict[str, int] = {}
    for s in strategies:
        for word in set(_CAPITAL.findall(s.exemplar)):
            counts[word] = counts.get(word, 0) + 1
    return " ".join(sorted(w for w, n in counts.items() if n >= min_entries))


class Planner:
    """Chooses the route for one turn. Construct once per agent; `plan` is called every turn."""

    def __init__(
        self,
        strategies: Sequence[Strategy],
        turn_vectors: np.ndarray,
        *,
        system_prompt: str = "",
        rules: Sequence[PolicyRule] = (),
        rule_check: Callable[[str], list[str]] | None = None,
        specs: Sequence[FactSpec] = (),
        replies: Mapping[str, str] | None = None,
        params: PlannerParams = PlannerParams(),
    ) -> None:
        self.strategies = list(strategies)
        self.turn_vectors = turn_vectors
        self.system_prompt = system_prompt
        self.rules = list(rules)
        self.rule_check = rule_check
        self.specs = list(specs)
        self.by_id = {s.id: s for s in self.specs}
        self.replies = {**DEFAULT_REPLIES, **dict(replies or {})}
        self.params = params
        self._row = {s.id: i for i, s in enumerate(self.strategies)}
        self.vocabulary = domain_vocabulary(self.strategies)
        # each entry's requires, parsed once (a typo must fail at load, not silently never match)
        self._conds = {s.id: _conditions(s) for s in self.strategies}
        for s in self.strategies:
            for cond in self._conds[s.id]:
                if self.specs and cond.fact not in self.by_id:
                    raise ConfigError(
                        f"strategy {s.id} requires unknown fact {cond.fact!r}; declare it in the "
                        f"domain's [[facts]] (known: {', '.join(sorted(self.by_id))})"
                    )

    # --- what the customer is asking now -------------------------------------------------------
    def request_texts(self, history: Sequence[Mapping[str, str]]) -> list[str]:
        """What the customer is asking now: the latest line, and (when it only answers our question)
        that line joined to their previous one. Relevance is the best match of either."""
        latest = next((str(m.get("content", "")) for m in reversed(history) if m.get("role") == "user"), "")
        joined = request_of(history)
        return [latest] if joined == latest.strip() or not joined else [latest, joined]

    # --- the decision ---------------------------------------------------------------------------
    def plan(
        self,
        history: Sequence[Mapping[str, str]],
        hits: Sequence[Hit],
        request_vecs: np.ndarray | None,
        facts: Facts,
        *,
        new_facts: bool = False,
        best_relevance: float = 1.0,
    ) -> Plan:
        """Choose this turn's route. `new_facts`: the latest line changed what is known; `best_relevance`:
        the latest request's best relevance to any entry in the library (for the off-topic check)."""
        p = self.params
        fresh = fresh_customer_facts(history, facts)
        scored = self._rank(self._with_fresh(hits, fresh), request_vecs, fresh)
        # what a fitted reply may draw on: the policy, the conversation, the domain's own words, and
        # the values the desk's lookups returned (a filled-in "{order_status}" is a checked fact)
        looked_up = " ".join(str(v) for v in facts.values.values() if not isinstance(v, bool))
        context = context_text(self.system_prompt, history) + "\n" + self.vocabulary + "\n" + looked_up
        said = {normalised(str(m.get("content", ""))) for m in history if m.get("role") == "assistant"}
        fit_params = AdaptParams(max_drop=p.max_drop, exemplar_tokens=p.exemplar_tokens)
        done: list[Candidate] = []
        clarify_for: tuple[str, Candidate] | None = None
        for hit, relevance in scored[: p.candidates]:
            verdict, missing, text = self._judge(hit, relevance, facts, context, said, fit_params)
            done.append(Candidate(hit.strategy.id, hit.score, relevance, verdict, tuple(missing)))
            if missing and clarify_for is None:
                clarify_for = (missing[0].lstrip("!"), done[-1])
            if verdict == "chosen":
                conds = self._conds_of(hit.strategy)
                why = f"{hit.strategy.id} answers the latest message (relevance {relevance:.2f})"
                if conds:
                    why += f"; its facts hold ({', '.join(map(str, conds))})"
                return Plan("exemplar", why, text, hit.strategy.id, tuple(done))
        if (
            best_relevance < p.off_topic
            and not new_facts
            and normalised(self.replies["off_topic"]) not in said
        ):
            return Plan(
                "clarify",
                f"the latest message is not about our service (best relevance {best_relevance:.2f} "
                f"< {p.off_topic}) -> say what we can help with",
                self.replies["off_topic"],
                "",
                tuple(done),
            )
        return self._fallback(done, clarify_for, said)

    def _judge(
        self, hit: Hit, relevance: float, facts: Facts, context: str, said: set[str], fit_params: AdaptParams
    ) -> tuple[str, list[str], str]:
        """(verdict, missing facts, fitted reply) for one candidate; the verdict is "chosen" or why not."""
        p, s = self.params, hit.strategy
        if hit.score < p.min_score:
            return f"score {hit.score:.2f} < {p.min_score}", [], ""
        if relevance < p.min_relevance:
            return (
                f"does not answer the latest message (relevance {relevance:.2f} < {p.min_relevance})",
                [],
                "",
            )
        conds = self._conds_of(s)
        conflict = [c for c in conds if facts.holds(c) is False]
        if conflict:
            return f"needs {', '.join(map(str, conflict))}, but it does not hold", [], ""
        missing = [str(c) for c in conds if facts.holds(c) is None]
        missing += [f for f in template_fields(s.exemplar) if facts.get(f) is None and f not in missing]
        if missing:
            return f"needs {', '.join(missing)}: not established", missing, ""
        asks = self._asks_known(s.exemplar, facts)
        if asks:
            return f"asks for {asks}, already established", [], ""
        exemplar = fill_template(s.exemplar, facts)
        fitted = fit_exemplar(exemplar, context, self.rules, fit_params)
        if not fitted.ok:
            return f"fit check: {fitted.reason}", [], ""
        claims = unestablished_claims(fitted.text, self.specs, facts)
        if claims:
            return f"claims {', '.join(claims)}: not established", [], ""
        broken = self._broken(fitted.text)
        if broken:
            return f"breaks rule {', '.join(broken)}", [], ""
        if normalised(fitted.text) in said:
            return "already said in this conversation", [], ""
        return "chosen", [], fitted.text

    def _fallback(
        self, done: list[Candidate], clarify_for: tuple[str, Candidate] | None, said: set[str]
    ) -> Plan:
        cands = tuple(done)
        if clarify_for is not None:
            fact, cand = clarify_for
            spec = self.by_id.get(fact)
            ask = spec.ask if spec is not None else ""
            if ask and normalised(ask) not in said:
                return Plan(
                    "clarify",
                    f"{cand.id} needs {fact}: not established -> clarify",
                    ask,
                    "",
                    cands,
                    missing=fact,
                )
            if ask and normalised(self.replies["repeat_ask"]) not in said:
                return Plan(
                    "clarify",
                    f"{cand.id} needs {fact}: still not established -> ask again",
                    self.replies["repeat_ask"],
                    "",
                    cands,
                    missing=fact,
                )
        if self.params.generate:
            why = "no library reply fits" if done else "nothing in the library is close"
            return Plan("generate", why + " -> the student drafts one (gated)", "", "", cands)
        return self.safe(cands, said, "no library reply fits" if done else "nothing in the library is close")

    def safe(self, cands: tuple[Candidate, ...], said: set[str], why: str) -> Plan:
        """Ask for more detail once; after that, offer a person."""
        if normalised(self.replies["clarify"]) not in said:
            return Plan(
                "clarify",
                f"{why} -> ask for more detail",
                self.replies["clarify"],
                "",
                cands,
            )
        return Plan(
            "handoff",
            f"{why}, and we already asked for more detail -> offer a person",
            self.replies["handoff"],
            "",
            cands,
        )

    # --- pieces ---------------------------------------------------------------------------------
    def best_relevance(self, request_vecs: np.ndarray) -> float:
        """The request's best relevance to any entry's customer line or reply."""
        return float(
            np.max(self.turn_vectors.reshape(-1, self.turn_vectors.shape[-1]) @ np.atleast_2d(request_vecs).T)
        )

    def _with_fresh(self, hits: Sequence[Hit], fresh: set[str]) -> list[Hit]:
        """The hits, plus every entry that requires a fact the latest customer line just established."""
        if not fresh:
            return list(hits)
        have = {h.strategy.id for h in hits}
        extra = [
            Hit(s, FRESH_SCORE, i)
            for i, s in enumerate(self.strategies)
            if s.id not in have and any(c.value and c.fact in fresh for c in self._conds_of(s))
        ]
        return [*hits, *extra]

    def _rank(
        self,
        hits: Sequence[Hit],
        request_vecs: np.ndarray | None,
        fresh: frozenset[str] | set[str] = frozenset(),
    ) -> list[tuple[Hit, float]]:
        """Hits with an exemplar, each with its relevance to the request, best combined first.

        An entry that requires a fact the customer's latest line established (their own words, e.g.
        "it's working again" -> line_fixed) answers that line, whatever the embedder says.
        """
        out: list[tuple[Hit, float, float]] = []
        seen: set[str] = set()
        for hit in hits:
            if hit.strategy.id in seen or not hit.strategy.exemplar.strip():
                continue
            seen.add(hit.strategy.id)
            relevance = to_reply = 0.0
            row = self._row.get(hit.strategy.id)
            if request_vecs is not None and row is not None:
                sims = (
                    self.turn_vectors[row] @ np.atleast_2d(request_vecs).T
                )  # (customer line | reply, requests)
                relevance, to_reply = float(np.max(sims)), float(np.max(sims[1]))
            if fresh and any(c.value and c.fact in fresh for c in self._conds_of(hit.strategy)):
                relevance = to_reply = max(relevance, FRESH_RELEVANCE)
            # the gate is the best relevance; the order weighs how close the reply itself is to the request
            w = self.params.reply_weight
            out.append(
                (hit, relevance, hit.score + self.params.rerank * ((1 - w) * relevance + w * to_reply))
            )
        out.sort(key=lambda t: -t[2])
        return [(h, r) for h, r, _ in out]

    def _conds_of(self, strategy: Strategy) -> list[Condition]:
        cached = self._conds.get(strategy.id)
        return cached if cached is not None else _conditions(strategy)

    def _asks_known(self, text: str, facts: Facts) -> str:
        for spec in self.specs:
            if (
                spec.asked_by
                and facts.get(spec.id) is True
                and any(re.search(p, text, re.IGNORECASE) for p in spec.asked_by)
            ):
                return spec.id
        return ""

    def _broken(self, text: str) -> list[str]:
        return broken_rules(text, self.rules, self.rule_check)
