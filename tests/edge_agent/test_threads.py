"""Thread count and wait policy: the choice as a pure function of what the process observes, the
/proc readers over fake files, the controller over a fake monitor, and (real tier) a pinned and an
automatic setting obeyed by llama.cpp."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from edge_agent.errors import ConfigError
from edge_agent.runtime import RuntimeConfig
from edge_agent.threads import (
    CpuObservation,
    ThreadController,
    _busy_ticks,
    _cgroup_quota,
    _physical_cores,
    apply_wait_policy,
    choose_threads,
    parse_threads,
    parse_wait_policy,
)

# (case, allowed, physical, cores other processes used, expected threads)
CASES = [
    ("idle 2-core", 2, 2, 0.05, 2),
    ("idle 2-core, light background", 2, 2, 0.30, 2),
    ("busy 2-core, seen while we decoded on 2 threads", 2, 2, 0.67, 1),
    ("busy 2-core, seen while we decoded on 1 thread", 2, 2, 1.00, 1),
    ("2-core, both cores busy", 2, 2, 2.40, 1),
    ("8-core laptop idle (4 physical, hyper-threads)", 8, 4, 0.10, 4),
    ("8-core laptop, browser on 2 cores", 8, 4, 2.00, 4),
    ("8-core laptop, build on 6 cores", 8, 4, 5.50, 2),
    ("8 physical cores, half busy", 8, 8, 4.00, 4),
    ("1 allowed core, idle", 1, 1, 0.00, 1),
    ("1 allowed core, busy", 1, 1, 1.00, 1),
]


@pytest.mark.parametrize("case,allowed,physical,others,expected", CASES, ids=[c[0] for c in CASES])
def test_choice_follows_the_free_cores(case: str, allowed: int, physical: int, others: float,
                                       expected: int) -> None:
    choice = choose_threads(CpuObservation(allowed, physical, others, 1.0))
    assert choice.threads == expected, choice.reason
    assert f"of {allowed} cores free" in choice.reason


def test_measured_rates_overrule_the_load_figure() -> None:
    idle = CpuObservation(2, 2, 0.1, 1.0)
    assert choose_threads(idle, {2: 40.0, 1: 50.0}).threads == 1
    assert "measured 50 tok/s at 1" in choose_threads(idle, {2: 40.0, 1: 50.0}).reason
    assert choose_threads(idle, {2: 40.0, 1: 41.0}).threads == 2  # within the margin: keep the pick
    busy = CpuObservation(2, 2, 0.8, 1.0)
    assert choose_threads(busy, {1: 30.0, 2: 45.0}).threads == 2
    assert choose_threads(busy, {1: 30.0}).threads == 1  # nothing measured at 2: load decides


def test_rates_never_push_past_the_cores() -> None:
    obs = CpuObservation(2, 2, 0.0, 1.0)
    assert choose_threads(obs, {2: 10.0, 3: 90.0}).threads == 2
    assert choose_threads(obs, max_threads=1).threads == 1


@pytest.mark.parametrize("value,expected", [(None, None), ("", None), ("auto", None), ("0", None),
                                            ("2", 2), (" 3 ", 3), (4, 4)])
def test_thread_setting_parses(value: object, expected: int | None) -> None:
    assert parse_threads(value) == expected  # type: ignore[arg-type]


@pytest.mark.parametrize("value", ["two", "-1", "1.5", "9999"])
def test_bad_thread_setting_names_the_fix(value: str) -> None:
    with pytest.raises(ConfigError, match="EDGE_AGENT_THREADS=2"):
        parse_threads(value)


def test_bad_wait_policy_names_the_choices() -> None:
    assert parse_wait_policy(None) == "auto"
    assert parse_wait_policy("Passive") == "passive"
    with pytest.raises(ConfigError, match="auto, spin, passive, active"):
        parse_wait_policy("fast")
    with pytest.raises(ConfigError, match="EDGE_AGENT_WAIT_POLICY"):
        RuntimeConfig.from_env(env={"EDGE_AGENT_WAIT_POLICY": "fast"})
    with pytest.raises(ConfigError, match="EDGE_AGENT_THREADS"):
        RuntimeConfig.from_env(env={"EDGE_AGENT_THREADS": "lots"})


@pytest.mark.parametrize("env,expected,policy", [
    ({}, {"GOMP_SPINCOUNT": "300000", "KMP_BLOCKTIME": "3"}, "auto"),
    ({"EDGE_AGENT_WAIT_POLICY": "passive"}, {"OMP_WAIT_POLICY": "PASSIVE"}, "passive"),
    ({"EDGE_AGENT_WAIT_POLICY": "active"}, {"OMP_WAIT_POLICY": "ACTIVE"}, "active"),
    ({"OMP_WAIT_POLICY": "PASSIVE"}, {"OMP_WAIT_POLICY": "PASSIVE"}, "user: OMP_WAIT_POLICY=PASSIVE"),
    ({"GOMP_SPINCOUNT": "1000"}, {"GOMP_SPINCOUNT": "1000"}, "user: GOMP_SPINCOUNT=1000"),
    ({"EDGE_AGENT_WAIT_POLICY": "passive", "KMP_BLOCKTIME": "0"}, {"KMP_BLOCKTIME": "0"}, "user: KMP_BLOCKTIME=0"),
])
def test_wait_policy_sets_openmp_variables(env: dict[str, str], expected: dict[str, str], policy: str) -> None:
    out = dict(env)
    assert RuntimeConfig.from_env(env).apply_wait_policy(out) == policy
    assert {k: v for k, v in out.items() if k != "EDGE_AGENT_WAIT_POLICY"} == expected
    assert apply_wait_policy(RuntimeConfig.from_env(env).wait_policy, dict(env)) == policy


def test_an_invalid_wait_policy_sets_nothing() -> None:
    with pytest.raises(ConfigError, match="EDGE_AGENT_WAIT_POLICY"):
        apply_wait_policy("fast", {})


def test_busy_ticks_sum_the_allowed_cpus_only(tmp_path: Path) -> None:
    stat = tmp_path / "stat"
    stat.write_text("cpu  90 0 30 500 10 0 0 0 0 0\n"
                    "cpu0 50 0 10 100 5 0 0 3 0 0\n"
                    "cpu1 40 0 20 400 5 0 0 0 0 0\n"
                    "intr 12345\nprocs_running 3\n")
    assert _busy_ticks({0}, stat) == 63  # user + system + steal; idle and iowait are not busy
    assert _busy_ticks({0, 1}, stat) == 123
    assert _busy_ticks({0}, tmp_path / "missing") is None


def test_cgroup_quota_and_physical_cores(tmp_path: Path) -> None:
    (tmp_path / "cpu.max").write_text("150000 100000\n")
    assert _cgroup_quota(tmp_path) == 1.5
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert _cgroup_quota(tmp_path) is None
    for cpu, core in enumerate([0, 0, 1, 1]):  # two cores with two hyper-threads each
        topo = tmp_path / f"cpu{cpu}" / "topology"
        topo.mkdir(parents=True)
        (topo / "physical_package_id").write_text("0\n")
        (topo / "core_id").write_text(f"{core}\n")
    assert _physical_cores([0, 1, 2, 3], tmp_path) == 2
    assert _physical_cores([0, 2], tmp_path) == 2
    assert _physical_cores([0, 9], tmp_path) == 2  # unreadable topology: count the CPUs


class FakeMonitor:
    def __init__(self, observations: list[CpuObservation]) -> None:
        self.physical = observations[0].physical
        self.observations = list(observations)

    def observe(self) -> CpuObservation:
        return self.observations.pop(0)


def test_controller_adapts_when_the_machine_gets_busier_and_quieter() -> None:
    idle, busy = CpuObservation(2, 2, 0.05, 2.0), CpuObservation(2, 2, 0.9, 2.0)
    ctl = ThreadController(monitor=FakeMonitor([idle, busy, busy, idle]))  # type: ignore[arg-type]
    assert ctl.current == 2
    assert [ctl.decide().threads for _ in range(4)] == [2, 1, 1, 2]


def test_controller_keeps_its_choice_over_a_short_window() -> None:
    ctl = ThreadController(monitor=FakeMonitor([CpuObservation(2, 2, 0.9, 1.0),  # type: ignore[arg-type]
                                                CpuObservation(2, 2, 0.0, 0.0)]))
    assert ctl.decide().threads == 1
    assert ctl.decide().threads == 1  # window too short to measure: unchanged


def test_controller_remembers_rates_per_load_level() -> None:
    light = CpuObservation(2, 2, 0.3, 2.0)  # the load figure says 2 threads
    ctl = ThreadController(monitor=FakeMonitor([light] * 4))  # type: ignore[arg-type]
    assert ctl.decide().threads == 2
    ctl.record(2, 30.0, tokens=128)
    ctl.rates[(1, ctl._level(light))] = 45.0  # as if a reply at 1 thread ran under this load
    assert ctl.decide().threads == 1
    ctl.record(1, 44.0, tokens=8)  # too short to count
    assert ctl.rates[(1, 1)] == 45.0


def test_pinned_count_is_never_changed() -> None:
    ctl = ThreadController(RuntimeConfig.from_env(env={"EDGE_AGENT_THREADS": "3"}).threads)
    assert (ctl.current, ctl.monitor) == (3, None)
    assert ctl.decide().threads == 3
    ctl.record(3, 10.0, tokens=100)
    assert ctl.rates == {}
    assert RuntimeConfig.from_env(env={"EDGE_AGENT_THREADS": "auto"}).threads is None


def test_real_monitor_reads_this_machine() -> None:
    from edge_agent.threads import CpuMonitor

    mon = CpuMonitor()
    assert 1 <= mon.physical <= mon.allowed <= (os.cpu_count() or 1)
    assert mon.observe().window_s == 0.0  # just sampled: too short
    mon._last = (mon._last[0] - 1.0, *mon._last[1:])  # pretend a second passed
    obs = mon.observe()
    assert obs.window_s >= 1.0 and obs.others_busy >= 0.0


def _child(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "KMP_BLOCKTIME",
                                                               "EDGE_AGENT_WAIT_POLICY", "EDGE_AGENT_THREADS")}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={**clean, **env},
                          timeout=120, check=False)


def test_the_policy_is_set_before_llama_cpp_loads() -> None:
    code = ("import os, sys; from edge_agent.runtime import RuntimeConfig; import edge_agent.student as s; "
            "before = 'llama_cpp' in sys.modules; s.import_llama_cpp(RuntimeConfig.from_env()); "
            "print(before, os.environ.get('OMP_WAIT_POLICY'), os.environ.get('GOMP_SPINCOUNT'), "
            "'llama_cpp' in sys.modules)")
    assert _child(code).stdout.split() == ["False", "None", "300000", "True"]
    assert _child(code, EDGE_AGENT_WAIT_POLICY="passive").stdout.split() == ["False", "PASSIVE", "None", "True"]
    # the user's own OpenMP variable wins
    assert _child(code, EDGE_AGENT_WAIT_POLICY="passive", OMP_WAIT_POLICY="ACTIVE").stdout.split() == [
        "False", "ACTIVE", "None", "True"]


def test_the_cli_sets_the_policy_before_any_command_runs(hash_pack: Path, tmp_path: Path) -> None:
    code = ("import os, sys; from click.testing import CliRunner; from edge_agent.cli import cli; "
            f"r = CliRunner().invoke(cli, ['pack', 'inspect', {str(hash_pack)!r}]); "
            "print(r.exit_code, os.environ.get('OMP_WAIT_POLICY'), 'llama_cpp' in sys.modules)")
    out = _child(code, EDGE_AGENT_WAIT_POLICY="passive", EDGE_AGENT_HOME=str(tmp_path))
    assert out.stdout.split() == ["0", "PASSIVE", "False"], out.stderr


def test_cli_says_how_to_fix_a_bad_setting(tmp_path: Path, hash_pack: Path) -> None:
    code = ("import sys; from edge_agent.cli import main; "
            f"sys.argv = ['edge-agent', 'chat', '--pack', {str(hash_pack)!r}]; main()")
    for var, value in (("EDGE_AGENT_THREADS", "many"), ("EDGE_AGENT_WAIT_POLICY", "fast")):
        out = _child(code, **{var: value, "EDGE_AGENT_HOME": str(tmp_path)})
        assert out.returncode != 0
        assert var in out.stderr and "Traceback" not in out.stderr
        assert len(out.stderr.strip().splitlines()) == 1, out.stderr


# --- real tier ------------------------------------------------------------------------------------

MESSAGES = [{"role": "system", "content": "You help customers of an internet provider."},
            {"role": "user", "content": "My internet is down since yesterday. What should I do?"}]


@pytest.mark.real
def test_real_turn_runs_with_the_automatic_choice(student_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import llama_cpp

    from edge_agent.backends import GenerationConfig
    from edge_agent.student import LlamaStudent, llama_context

    monkeypatch.delenv("EDGE_AGENT_THREADS", raising=False)
    student = LlamaStudent(student_path, n_ctx=512, runtime=RuntimeConfig.from_env())
    assert student.threads.pinned is None
    for _ in range(2):
        reply = student.chat(MESSAGES, GenerationConfig(max_tokens=24))
        assert reply.text and reply.usage.completion_tokens > 0
        used = int(reply.timings["threads"])
        assert 1 <= used <= student.threads.monitor.allowed  # type: ignore[union-attr]
        assert llama_cpp.llama_n_threads(llama_context(student.llm)) == used


@pytest.mark.real
def test_real_pinned_threads_are_obeyed(student_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import llama_cpp

    from edge_agent.backends import GenerationConfig
    from edge_agent.student import LlamaStudent, llama_context

    monkeypatch.setenv("EDGE_AGENT_THREADS", "1")
    student = LlamaStudent(student_path, n_ctx=512, runtime=RuntimeConfig.from_env())
    for _ in range(2):
        reply = student.chat(MESSAGES, GenerationConfig(max_tokens=16))
        assert reply.timings["threads"] == 1
        assert llama_cpp.llama_n_threads(llama_context(student.llm)) == 1
        assert llama_cpp.llama_n_threads_batch(llama_context(student.llm)) == 1
    assert student.kv_cache == "q8_0"


@pytest.mark.real
def test_real_weights_load_at_the_first_generation(student_path: Path, tmp_path: Path) -> None:
    from edge_agent.backends import GenerationConfig
    from edge_agent.student import LlamaStudent

    student = LlamaStudent(student_path, n_ctx=512)
    assert not student.loaded and student.n_ctx == 512
    tokens, _ = student.tokenize_messages(MESSAGES)  # the vocabulary is there before the weights
    assert student.warm_prefix(MESSAGES[0]["content"], tmp_path) == "deferred"
    stream = student.stream(MESSAGES, GenerationConfig(max_tokens=8))
    assert stream.result is None
    text = "".join(stream)
    assert student.loaded and student.n_ctx == 512
    assert list(tmp_path.glob("*.kv")), "the deferred prefix was built and saved at load"
    result = stream.result
    assert result is not None and result.text == text and result.model == student.name
    assert result.usage.prompt_tokens == len(tokens)
    assert 0 < result.usage.completion_tokens <= 8 and result.finish_reason in ("stop", "length")
    assert result.usage.evaluated_prompt_tokens < len(tokens)  # type: ignore[operator]  # the prefix was cached
    assert {"ttft_ms", "decode_tps", "total_ms", "threads"} <= set(result.timings)
    eager = LlamaStudent(student_path, n_ctx=512, lazy=False, kv_cache="f16")
    assert eager.loaded and eager.warm_prefix(MESSAGES[0]["content"], None) == "built"
    with pytest.raises(Exception, match="kv_cache 'q4' is not supported"):
        LlamaStudent(student_path, kv_cache="q4")
