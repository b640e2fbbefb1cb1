"""Fuzzing the graph loader: whatever a graph file holds, `check` answers with exit 0, or
with exit 2 and exactly one stderr line starting `error:`; never a traceback, never a hang.

Cases (seeded, so a failure replays): duplicate keys at every level, anchors and aliases
(billion laughs among them), control characters in every kind of name, deep nesting,
huge and non-finite numbers, every field with wrong types, random bytes, random
YAML-looking text, and random mutations of the bundled graphs. The default is about 250
cases (seconds); POSEGRAPH_FUZZ_ROUNDS=N generates N times as many random ones,
POSEGRAPH_FUZZ_SEED=S other ones.

Each case runs the CLI's `main(["check", FILE])` in this process (fast), on a real file in
tmp_path; a few run `python runner.py check` as a subprocess with its address space capped
at 1 GB. Every case must finish within 5 s.
"""
from __future__ import annotations

import contextlib
import io
import os
import random
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from test_graph_validation import NODE_LEVEL, WRONG_TYPE_CASES, wrong_type_graph

ROOT = Path(__file__).resolve().parents[2]
GRAPHS = sorted((ROOT / "graphs").glob("*.yaml"))
ROUNDS = max(1, int(os.environ.get("POSEGRAPH_FUZZ_ROUNDS", "1")))
SEED = int(os.environ.get("POSEGRAPH_FUZZ_SEED", "20240601"))
SECONDS = 5.0

VALID = "name: t\nnodes:\n  - id: source\n    uses: synthetic\n    params: {width: 64, height: 48, count: 5}\n" \
        "  - id: hop\n    uses: passthrough\n    inputs: {frame: source/frame}\n" \
        "  - id: sink\n    uses: null\n    inputs: {frame: hop/frame}\n"
CONTROLS = ["\\n", "\\r", "\\t", "\\0", "\\a", "\\e", "\\x7f", "\\x85", "\\u2028", "\\x1b[2J"]


@dataclass(frozen=True)
class Case:
    name: str
    data: str | bytes
    expect: int | None  # 0, 2, or None: either (a mutation may still be a valid graph)
    keys: bool = False  # pass --keys (the graph has `security:`)


def _fixed_cases() -> list[Case]:
    cases = [Case("valid-small", VALID, 0)]
    cases += [Case(f"valid-bundled-{g.stem}", g.read_text(), 0, keys="security:" in g.read_text()) for g in GRAPHS]
    # duplicate keys: each top-level field, each node field, a param, a queue field
    top = {"name": "t", "description": "d", "transport": "ipc", "host": "127.0.0.1", "base_port": "6000",
           "machines": "[a]", "security": "none"}
    for key, value in top.items():
        cases.append(Case(f"dup-top-{key}", f"{key}: {value}\n{key}: {value}\n" + NODE_LEVEL, 2))
    cases.append(Case("dup-top-nodes", VALID + "nodes:\n  - id: other\n    uses: synthetic\n", 2))
    node = {"id": "hop", "uses": "passthrough", "params": "{}", "inputs": "{frame: source/frame}", "queue": "{}",
            "replicas": "1", "restart": "never", "max_restarts": "1", "transport": "ipc", "port": "6000",
            "cpus": "[0]", "cpus_shared": "false", "machine": "a"}
    for key, value in node.items():
        times = 1 if key in ("id", "uses", "inputs") else 2  # NODE_LEVEL's second node has these once already
        cases.append(Case(f"dup-node-{key}", NODE_LEVEL + f"    {key}: {value}\n" * times, 2))
    cases.append(Case("dup-param", VALID.replace("width: 64,", "width: 64, width: 32,"), 2))
    cases.append(Case("dup-queue-field", NODE_LEVEL + "    queue: {frame: {size: 2, size: 3}}\n", 2))
    cases.append(Case("dup-input-port", NODE_LEVEL.replace("{frame: source/frame}", "{frame: source/frame, frame: source/frame}"), 2))
    # anchors and aliases
    for depth in (2, 5, 9, 12):
        bomb = "".join(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}" if i else "lol"] * 9) + "]\n" for i in range(depth))
        cases.append(Case(f"alias-bomb-top-{depth}", bomb + NODE_LEVEL, 2))
        cases.append(Case(f"alias-bomb-param-{depth}", NODE_LEVEL + "    params:\n" + re.sub("^", "      ", bomb, flags=re.MULTILINE)
                          + f"      delay_ms: *a{depth - 1}\n", 2))
    cases.append(Case("anchor-only", VALID.replace("name: t", "name: &n t"), 2))
    cases.append(Case("merge-alias", "base: &b {uses: synthetic}\nnodes:\n  - <<: *b\n    id: source\n", 2))
    cases.append(Case("alias-in-name", "x: &x [1]\nname: *x\n" + NODE_LEVEL, 2))
    # control characters in every kind of name (each character in three of them, in turn)
    names = [("id", lambda c: VALID.replace("id: hop", f'id: "hop{c}"')),
             ("name", lambda c: VALID.replace("name: t", f'name: "t{c}x"')),
             ("uses", lambda c: VALID.replace("uses: passthrough", f'uses: "passthrough{c}"')),
             ("param-name", lambda c: VALID.replace("width: 64", f'"width{c}": 64')),
             ("port", lambda c: VALID.replace("inputs: {frame: source/frame}", f'inputs: {{"frame{c}": source/frame}}')),
             ("ref", lambda c: VALID.replace("inputs: {frame: source/frame}", f'inputs: {{frame: "source/frame{c}"}}')),
             ("machine", lambda c: f'machines: ["edge{c}"]\n' + VALID),
             ("top-key", lambda c: f'"nodes{c}": 1\n' + VALID)]
    for i, c in enumerate(CONTROLS):
        for kind, graph in (names[(3 * i + k) % len(names)] for k in range(3)):
            cases.append(Case(f"ctl-{kind}-{i}", graph(c), 2))
    # deep nesting, flow and block
    for depth in (65, 100, 1000, 20000):
        cases.append(Case(f"deep-flow-list-{depth}", "nodes: " + "[" * depth + "]" * depth + "\n", 2))
        cases.append(Case(f"deep-flow-map-{depth}", "nodes: " + "{a: " * depth + "1" + "}" * depth + "\n", 2))
        cases.append(Case(f"deep-param-{depth}", NODE_LEVEL + "    params: {delay_ms: " + "[" * depth + "]" * depth + "}\n", 2))
    cases.append(Case("deep-block-300", "nodes:\n" + "".join("  " * i + "- \n" for i in range(300)), 2))
    # huge and non-finite numbers
    numbers = ["9223372036854775808", "-9223372036854775809", "1" + "0" * 30, "9" * 5000, "0x" + "f" * 40,
               "0b" + "1" * 100, "1.0e+400", "-1.0e+400", ".inf", "-.inf", ".nan", "1e400", "1_000_000_000_000_000_000_000"]
    for i, number in enumerate(numbers):
        cases.append(Case(f"num-width-{i}", VALID.replace("width: 64", f"width: {number}"), 2))
        cases.append(Case(f"num-fps-{i}", VALID.replace("count: 5", f"count: 5, fps: {number}"), 2))
        if i % 2:
            cases.append(Case(f"num-replicas-{i}", NODE_LEVEL + f"    replicas: {number}\n", 2))
        else:
            cases.append(Case(f"num-base-port-{i}", f"base_port: {number}\n" + NODE_LEVEL, 2))
    # explicit tags a graph has no use for
    for i, tagged in enumerate(["!!int abc", "!!float x", "!!bool maybe", "!!timestamp never", "!!binary '%%%'",
                                "!!python/object:os.system {}", "!!set {a, b}", "!!omap [a]", "!!str", "2024-13-45"]):
        cases.append(Case(f"tag-{i}", f"name: {tagged}\n" + NODE_LEVEL, 2))
    # every field with wrong types: a quarter of the table of test_graph_validation (which runs all of it)
    for j, (level, field, value) in enumerate(WRONG_TYPE_CASES[::4]):
        cases.append(Case(f"wrong-{level}-{field}-{j}", wrong_type_graph(level, field, value), 2))
    # whole files that are not graphs
    cases += [Case("empty", "", 2), Case("bom-only", "\ufeff", 2), Case("nul", "\0", 2), Case("latin1", b"name: caf\xe9\n", 2),
              Case("two-documents", VALID + "---\n" + VALID, 2), Case("scalar", "42\n", 2), Case("list", "- 1\n", 2),
              Case("tab-indent", VALID.replace("    uses: synthetic", "\tuses: synthetic"), 2)]
    return cases


ALPHABET = list(":-[]{}&*!|>'\"%@#,?~ \n\t") + list("abcdefgnoqrstuxyz0123456789_./") + ["\x00", "\x1b", "\u2028", "\xe9", "\U0001F600"]
VOCABULARY = ["nodes", "id", "uses", "params", "inputs", "queue", "replicas", "null", "~", "[]", "{}", "-1", "1e999",
              ".nan", "&a", "*a", "<<", "!!int", "synthetic", "passthrough", "source/frame", "../x.py:X", '"\\n"', "'", "? "]


def _garbage(rng: random.Random, n: int) -> list[Case]:
    cases = []
    for i in range(n):
        if i % 2:
            cases.append(Case(f"bytes-{i}", bytes(rng.randrange(256) for _ in range(rng.randrange(0, 600))), 2))
        else:
            cases.append(Case(f"text-{i}", "".join(rng.choice(ALPHABET) for _ in range(rng.randrange(0, 600))), 2))
    return cases


def _mutate(rng: random.Random, text: str) -> str:
    lines = text.splitlines(keepends=True) or ["\n"]
    for _ in range(rng.randint(1, 3)):
        op = rng.randrange(10)
        i = rng.randrange(len(lines))
        if op == 0 and len(lines) > 1:
            del lines[i]
        elif op == 1:
            lines.insert(i, lines[i])  # a duplicated line: often a duplicate key
        elif op == 2:
            j = rng.randrange(len(lines))
            lines[i], lines[j] = lines[j], lines[i]
        elif op == 3:
            pos = rng.randrange(len(lines[i]) + 1)
            lines[i] = lines[i][:pos] + rng.choice(ALPHABET) + lines[i][pos:]
        elif op == 4 and lines[i]:
            pos = rng.randrange(len(lines[i]))
            lines[i] = lines[i][:pos] + lines[i][pos + 1:]
        elif op == 5:
            lines[i] = re.sub(r"\b\d+\b", lambda m: rng.choice(["-1", "0", "99999999999999999999", "1.5", ".nan", "x"]), lines[i])
        elif op == 6:
            words = re.findall(r"[A-Za-z_]+", lines[i])
            if words:
                lines[i] = lines[i].replace(rng.choice(words), rng.choice(VOCABULARY), 1)
        elif op == 7:
            lines[i] = rng.choice(["  ", "", "    "]) + lines[i].lstrip(" ") if rng.random() < 0.5 else "  " + lines[i]
        elif op == 8:
            lines = lines[:i + 1]
            lines[-1] = lines[-1][:rng.randrange(len(lines[-1]) + 1)]
        else:
            lines.insert(i, rng.choice(["x: &a [1, 2]\n", "  - *a\n", "nodes: *a\n", "<<: {id: q}\n", "? [a]\n: 1\n"]))
    return "".join(lines)


def _random_cases() -> list[Case]:
    rng = random.Random(SEED)
    cases = _garbage(rng, 16 * ROUNDS)
    sources = [VALID] + [g.read_text() for g in GRAPHS]
    for i in range(50 * ROUNDS):
        base = rng.randrange(len(sources))
        text = sources[base]
        cases.append(Case(f"mutation-{i}", _mutate(rng, text), None, keys="security:" in text))
    return cases


CASES = _fixed_cases() + _random_cases()


@pytest.fixture(scope="module")
def keys(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("fuzz") / "keys"
    subprocess.run([sys.executable, str(ROOT / "runner.py"), "keys", str(folder)], check=True, capture_output=True, cwd=ROOT)
    return folder


def check(path: Path, *args: str) -> tuple[int, str, str, float]:
    """`check PATH ARGS` through the CLI's main in this process: exit code, stdout, stderr, seconds."""
    from posegraph.cli import main

    out, err = io.StringIO(), io.StringIO()
    started = time.monotonic()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(["check", str(path), *args])
        except BaseException as exc:  # noqa: BLE001 - the point: nothing may escape main
            raise AssertionError(f"main raised {type(exc).__name__}: {exc}") from None
    return code, out.getvalue(), err.getvalue(), time.monotonic() - started


def assert_answer(case: Case, code: int, out: str, err: str, seconds: float) -> None:
    where = f"case {case.name}: exit {code}, stdout {out[:300]!r}, stderr {err[:300]!r}"
    assert seconds < SECONDS, f"{where}: took {seconds:.1f} s"
    assert "Traceback" not in err, where
    if code == 0:
        assert case.expect in (0, None), where
        assert err == "" and ": ok (" in out, where
    else:
        assert code == 2 and case.expect in (2, None), where
        assert out == "", where
        assert err.endswith("\n") and len(err.splitlines()) == 1 and err.startswith("error: "), where


def write(tmp_path: Path, case: Case) -> Path:
    path = tmp_path / "graph.yaml"
    if isinstance(case.data, bytes):
        path.write_bytes(case.data)
    else:
        path.write_text(case.data, encoding="utf-8", errors="surrogatepass")
    return path


def test_the_fuzz_cases_cover_every_family():
    families = {c.name.split("-")[0] for c in CASES}
    assert {"valid", "dup", "alias", "anchor", "ctl", "deep", "num", "wrong", "bytes", "text", "mutation"} <= families
    assert len(CASES) >= 200


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_check_answers_every_graph_with_ok_or_one_error_line(tmp_path, monkeypatch, keys, case):
    monkeypatch.chdir(ROOT)  # the bundled graphs name files relative to the repository root
    path = write(tmp_path, case)
    args = ("--keys", str(keys)) if case.keys else ()
    assert_answer(case, *check(path, *args))


SUBPROCESS_CASES = ["dup-top-nodes", "alias-bomb-param-12", "deep-flow-list-20000", "num-width-3", "ctl-id-0", "bytes-1",
                    "valid-small"]


@pytest.mark.parametrize("name", SUBPROCESS_CASES)
def test_runner_check_subprocess_answers_within_bounds(tmp_path, name):
    """The same answer from a real `python runner.py check`, with 1 GB of address space."""
    import resource

    case = next(c for c in CASES if c.name == name)
    path = write(tmp_path, case)

    def cap():
        resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))

    started = time.monotonic()
    done = subprocess.run([sys.executable, "runner.py", "check", str(path)], cwd=ROOT, capture_output=True, text=True,
                          timeout=60, preexec_fn=cap, check=False)
    seconds = time.monotonic() - started
    # a subprocess also pays for starting Python and importing the engine: twice the in-process bound
    assert_answer(case, done.returncode, done.stdout, done.stderr, seconds / 2)
    assert done.returncode == case.expect
