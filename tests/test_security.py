"""No pickle anywhere: weights are safetensors, training state loads with weights_only=True,
configs are JSON/TOML read without eval, archives are never extracted blindly."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "vaelab"
FORBIDDEN = {
    "import pickle": re.compile(r"^\s*(import|from)\s+(c?pickle|dill|cloudpickle|marshal|shelve)\b"),
    "pickle.load/dumps": re.compile(r"\b(c?pickle|dill|marshal)\.(loads?|dumps?|Unpickler)\b"),
    "eval(": re.compile(r"(?<![.\w])eval\("),
    "exec(": re.compile(r"(?<![.\w])exec\("),
    "allow_pickle=True": re.compile(r"allow_pickle\s*=\s*True"),
    "weights_only=False": re.compile(r"weights_only\s*=\s*False"),
    "extractall(": re.compile(r"\.extractall\("),
    "yaml.load(": re.compile(r"yaml\.(unsafe_)?load\("),
    "shell=True": re.compile(r"shell\s*=\s*True"),
}


def sources() -> list[Path]:
    files = sorted(SRC.rglob("*.py"))
    assert len(files) > 10, f"no sources found under {SRC}"
    return files


@pytest.mark.parametrize("name", FORBIDDEN)
def test_no_unsafe_call_in_the_source(name: str) -> None:
    hits = [f"{path.relative_to(SRC)}:{i}: {line.strip()}"
            for path in sources() for i, line in enumerate(path.read_text().splitlines(), 1)
            if FORBIDDEN[name].search(line)]
    assert not hits, f"{name} in vaelab's source:\n" + "\n".join(hits)


def test_every_torch_load_is_weights_only() -> None:
    """torch.load(...) calls, possibly spread over lines, all pass weights_only=True."""
    bad = []
    for path in sources():
        text = path.read_text()
        for m in re.finditer(r"torch\.load\(", text):
            depth, i = 1, m.end()
            while depth and i < len(text):  # the call's arguments, up to the closing bracket
                depth += {"(": 1, ")": -1}.get(text[i], 0)
                i += 1
            if not re.search(r"weights_only\s*=\s*True", text[m.end():i]):
                bad.append(f"{path.relative_to(SRC)}:{text.count(chr(10), 0, m.start()) + 1}")
    assert not bad, "torch.load without weights_only=True at " + ", ".join(bad)


def test_the_checker_catches_what_it_should() -> None:
    """The patterns find real uses and ignore `model.eval()` and words in docstrings."""
    assert FORBIDDEN["eval("].search("x = eval(text)")
    assert not FORBIDDEN["eval("].search("model.eval()")
    assert FORBIDDEN["import pickle"].search("import pickle")
    assert not FORBIDDEN["import pickle"].search('"""loading never unpickles code"""')
    assert FORBIDDEN["exec("].search("exec(code)")
