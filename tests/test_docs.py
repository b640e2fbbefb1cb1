"""README.md and docs/*.md: every code block is run by a test, run here, or says why not;
every relative link points to a file that exists and every #anchor to a heading.

A fenced block carries, on the line right before its opening fence, one of
    <!-- tested: tests/PATH.py -->   that test file exists and reads this very doc file
                                     (it takes the block out of the file and runs it)
    <!-- run -->                     run here, from the repository root with the running
                                     Python's bin folder (.venv/bin) first on PATH, each
                                     within 60 s, and must exit 0: a shell block command by
                                     command, a YAML block as a whole graph checked with
                                     `posegraph check`, a Python block as a script
    <!-- not run: REASON -->         not runnable here, and why
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BIN = Path(sys.executable).parent  # .venv/bin: where `python` and `posegraph` are
TIMEOUT_S = 60

FENCE = re.compile(r"^(`{3,}|~{3,})\s*([\w+-]*)")
TESTED = re.compile(r"^<!--\s*tested:\s*(\S+)\s*-->\s*$")
NOT_RUN = re.compile(r"^<!--\s*not run:\s*(.*?)\s*-->\s*$")
RUN = re.compile(r"^<!--\s*run\s*-->\s*$")
ANY_TAG = re.compile(r"^<!--\s*(tested:|not run:|run\s*-->)")


@dataclass
class Block:
    doc: Path
    line: int  # 1-based line of the opening fence
    lang: str
    text: str
    tag: str  # the line before the fence

    @property
    def where(self) -> str:
        return f"{self.doc.relative_to(ROOT)}:{self.line}"


def blocks(doc: Path) -> list[Block]:
    lines = doc.read_text().splitlines()
    found, i = [], 0
    while i < len(lines):
        opening = FENCE.match(lines[i])
        if not opening:
            i += 1
            continue
        fence, lang = opening.groups()
        end = i + 1
        while end < len(lines) and not re.match(rf"^{re.escape(fence)}{re.escape(fence[0])}*\s*$", lines[end]):
            end += 1
        assert end < len(lines), f"{doc.relative_to(ROOT)}:{i + 1}: a code block that never closes"
        found.append(Block(doc, i + 1, lang, "\n".join(lines[i + 1:end]) + "\n", lines[i - 1].strip() if i else ""))
        i = end + 1
    return found


def outside_blocks(doc: Path) -> list[tuple[int, str]]:
    """The lines outside code blocks, with their 1-based numbers."""
    inside, out = None, []
    for number, line in enumerate(doc.read_text().splitlines(), 1):
        opening = FENCE.match(line)
        if inside is None and opening:
            inside = opening.group(1)
        elif inside is not None:
            if re.match(rf"^{re.escape(inside)}{re.escape(inside[0])}*\s*$", line):
                inside = None
        else:
            out.append((number, line))
    return out


def prose(doc: Path) -> list[tuple[int, str]]:
    """The lines outside code blocks, inline code spans blanked out (a link in code is no link)."""
    return [(number, re.sub(r"`[^`]*`", "``", line)) for number, line in outside_blocks(doc)]


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: the text lowercased, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading.strip())  # a link: its text
    return re.sub(r"[^\w\- ]", "", text.lower()).replace(" ", "-")


def anchors(doc: Path) -> set[str]:
    """Every heading's anchor; a repeated one gets -1, -2... as on GitHub."""
    seen: dict[str, int] = {}
    result = set()
    for _, line in outside_blocks(doc):
        heading = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if heading:
            base = slug(heading.group(1))
            n = seen.get(base, 0)
            seen[base] = n + 1
            result.add(f"{base}-{n}" if n else base)
    return result


# Files whose blocks are not tagged (yet): docs/records.md is kept by the record's owners,
# its two blocks are samples of records. Its links are checked all the same.
NOT_TAGGED: set = set()
ALL_BLOCKS = [block for doc in DOCS if doc not in NOT_TAGGED for block in blocks(doc)]
RUN_BLOCKS = [block for block in ALL_BLOCKS if RUN.match(block.tag)]


def test_the_docs_are_there_and_have_blocks():
    assert (ROOT / "README.md") in DOCS and len(DOCS) >= 8, [str(d) for d in DOCS]
    assert len(ALL_BLOCKS) > 20 and RUN_BLOCKS


def test_every_code_block_is_tested_run_or_says_why_not():
    untagged = [f"{b.where}: ```{b.lang} block without a tested/run/not run comment on the line before it"
                for b in ALL_BLOCKS if not (TESTED.match(b.tag) or RUN.match(b.tag) or NOT_RUN.match(b.tag))]
    empty = [f"{b.where}: `not run:` without a reason" for b in ALL_BLOCKS
             if NOT_RUN.match(b.tag) and not NOT_RUN.match(b.tag).group(1)]
    assert not untagged + empty, "\n".join(untagged + empty)


def test_every_tag_comment_is_right_before_a_code_block():
    stray = []
    for doc in DOCS:
        lines = doc.read_text().splitlines()
        for i, line in enumerate(lines):
            if ANY_TAG.match(line.strip()) and not (i + 1 < len(lines) and FENCE.match(lines[i + 1])):
                stray.append(f"{doc.relative_to(ROOT)}:{i + 1}: {line.strip()}")
    assert not stray, "tag comments that are not on the line before a fence:\n" + "\n".join(stray)


@pytest.mark.parametrize("block", [b for b in ALL_BLOCKS if TESTED.match(b.tag)], ids=lambda b: b.where)
def test_a_tested_block_names_a_test_that_reads_its_file(block):
    name = TESTED.match(block.tag).group(1)
    test = ROOT / name
    assert name.startswith("tests/") and test.is_file(), f"{block.where}: no test file {name}"
    doc = block.doc.relative_to(ROOT)
    text = test.read_text()
    assert doc.name in text, f"{block.where}: {name} never names {doc} (it must read the block from it)"


def commands(script: str) -> list[str]:
    """A shell block's commands: continuation lines joined, blank and comment lines left out."""
    joined, found = "", []
    for line in script.splitlines():
        if line.rstrip().endswith("\\"):
            joined += line.rstrip()[:-1] + " "
            continue
        command = (joined + line).strip()
        joined = ""
        if command and not command.startswith("#"):
            found.append(command)
    return found


def run(args, **kwargs) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    return subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=TIMEOUT_S, check=False, **kwargs)


@pytest.mark.parametrize("block", RUN_BLOCKS, ids=lambda b: b.where)
def test_a_run_block_runs(block, tmp_path):
    if block.lang in ("sh", "bash", "shell", "console"):
        todo = commands(block.text)
        assert todo, f"{block.where}: a run block with no command"
        for command in todo:
            done = run(["bash", "-c", f"set -o pipefail; {command}"])
            assert done.returncode == 0, f"{block.where}: `{command}` exited {done.returncode}\n{done.stderr[-2000:]}"
    elif block.lang == "yaml":
        graph = yaml.safe_load(block.text)
        assert isinstance(graph, dict) and "nodes" in graph, f"{block.where}: a run YAML block must be a whole graph"
        path = tmp_path / "graph.yaml"
        path.write_text(block.text)
        done = run([str(BIN / "posegraph"), "check", str(path)])
        assert done.returncode == 0, f"{block.where}: posegraph check says\n{done.stdout}{done.stderr}"
    elif block.lang == "python":
        path = tmp_path / "block.py"
        path.write_text(block.text)
        done = run([sys.executable, str(path)])
        assert done.returncode == 0, f"{block.where}: the block failed\n{done.stderr[-2000:]}"
    else:
        pytest.fail(f"{block.where}: a ```{block.lang} block cannot be run here; tag it `not run: REASON`")


LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")


def test_every_relative_link_and_anchor_resolves():
    broken = []
    for doc in DOCS:
        for number, line in prose(doc):
            for target in LINK.findall(line):
                if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
                    continue
                path, _, anchor = target.partition("#")
                goal = (doc.parent / path).resolve() if path else doc
                where = f"{doc.relative_to(ROOT)}:{number}: {target}"
                if not goal.exists():
                    broken.append(f"{where}: no such file")
                elif anchor and goal.suffix == ".md" and anchor not in anchors(goal):
                    broken.append(f"{where}: no heading with that anchor in {goal.relative_to(ROOT)}")
    assert not broken, "\n".join(broken)


def test_slugs_are_githubs():
    assert slug("Your own video: `posegraph run`") == "your-own-video-posegraph-run"
    assert slug('Saying "unknown"') == "saying-unknown"
    assert slug("Custom keypoint models: what about 1,000 frames give") == "custom-keypoint-models-what-about-1000-frames-give"
    assert slug("Pose backends (`pose` param `model`)") == "pose-backends-pose-param-model"
