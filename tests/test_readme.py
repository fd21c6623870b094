"""The README and the docs say true things: the commands the README shows that finish in seconds run as
written, the set-up commands are the ones CI runs, every file the docs cite is in the repository, and no
tracked file names a path of one particular machine or cites design notes that are not in the repository."""
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
SETUP_RUN = "python -m pip install -r requirements.txt && python run_all.py"
SETUP_TEST = "python -m pip install -r requirements-dev.txt && python -m pytest -q"

# Written in pieces so that this file does not match itself.
MACHINE_PATHS = ["/" + "work/", "../" + "shared", "shared" + "/svhn"]
MACHINE_PATH_RE = re.compile(r"""["']shared["']\s*/\s*["']svhn["']""")   # a Path(...) / 'shared' / ... chain
# The one documented exception: the tests look for the sample beside the clone, where CI lays it; the
# folder is found relative to the repository (no machine's absolute path) and tests skip without it.
SAMPLE_FALLBACK = "tests/conftest.py"
UNSHIPPED_NOTES = ["DESIGN" + ".md", "STYLE" + ".md"]


def code_blocks(text, language="bash"):
    """The contents of the fenced blocks of a Markdown text whose fence names `language` ("" for none)."""
    blocks, current, fence = [], None, None
    for line in text.splitlines():
        if current is None and line.startswith("```"):
            current, fence = [], line[3:].strip()
        elif current is not None and line.startswith("```"):
            if fence == language:
                blocks.append("\n".join(current) + "\n")
            current = None
        elif current is not None:
            current.append(line)
    return blocks


def shell_commands(text):
    """Each command of the README's bash blocks: continuation lines joined, comments stripped."""
    commands = []
    for block in code_blocks(text):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split(" #")[0].strip()
            if line and not line.startswith("#"):
                commands.append(" ".join(line.split()))
    return commands


def quick_commands():
    """The README's commands that finish in seconds: every --help, and python -m nn."""
    return [c for c in shell_commands(README.read_text()) if c.endswith(" --help") or c == "python -m nn"]


def test_the_readme_is_a_front_page():
    lines = README.read_text().splitlines()
    assert len(lines) <= 150, f"README.md has {len(lines)} lines; keep it a front page (measurements: docs/results.md)"


def test_setup_commands_are_the_ones_ci_runs():
    commands = shell_commands(README.read_text())
    assert SETUP_RUN in commands and SETUP_TEST in commands
    ci = (ROOT / ".ci" / "run").read_text()
    assert "requirements-dev.txt" in ci and "python -m pytest -q" in ci


def test_the_readme_shows_the_quick_commands():
    shown = quick_commands()
    for needed in ("python run_all.py --help", "python -m svhn --help", "python -m procedural --help",
                   "python -m gan --help", "python -m gan.simgan --help", "python -m classify --help",
                   "python -m bench --help", "python -m nn"):
        assert needed in shown, f"the README does not show {needed!r}"


@pytest.mark.parametrize("command", quick_commands())
def test_readme_command_runs_as_written(command):
    argv = shlex.split(command)
    assert argv[0] == "python"
    done = subprocess.run([sys.executable] + argv[1:], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"{command} exited {done.returncode}: {done.stderr.strip()[-500:]}"
    assert done.stdout.strip()
    assert "Traceback" not in done.stderr


def test_the_layout_names_every_top_level_folder():
    layout = next(b for b in code_blocks(README.read_text(), "") if "nn/" in b and "tests/" in b)
    named = {line.split()[0].rstrip("/") for line in layout.splitlines() if line.strip()}
    folders = {p.name for p in ROOT.iterdir() if p.is_dir() and (p / "__init__.py").exists() or p.name in
               ("tests", "docs", "bench", ".ci")}
    missing = sorted(f for f in folders if f not in named)
    assert not missing, f"README's layout does not name {missing}"


# ----------------------------------------------------------------------------------- cited files

def documents():
    """Every Markdown file of the repository (README.md, docs/*.md, nn/README.md, ...)."""
    return sorted(p for p in ROOT.rglob("*.md") if not any(part.startswith(".") for part in p.relative_to(ROOT).parts)
                  and "results" not in p.relative_to(ROOT).parts[:1])


CITED_FILE = re.compile(r"^[\w.-]+(/[\w.-]+)*\.(py|md|sh|txt|ini|png|cfg|toml)$")


def cited_paths(doc):
    """Paths a document cites: link targets, and backticked file names that contain a folder."""
    text = doc.read_text()
    cited = set()
    for target in re.findall(r"\]\(([^)\s]+)\)", text) + re.findall(r'<img src="([^"]+)"', text):
        if not re.match(r"^[a-z]+://|^#|^mailto:", target):
            cited.add(target.split("#")[0])
    for token in re.findall(r"`([^`\s]+)`", text):
        if "/" in token and CITED_FILE.match(token) and not token.split("/")[0].isupper():
            cited.add(token)
    return sorted(c for c in cited if c)


@pytest.mark.parametrize("doc", documents(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_file_a_document_cites_exists(doc):
    missing = [c for c in cited_paths(doc) if not (doc.parent / c).exists() and not (ROOT / c).exists()]
    assert not missing, f"{doc.relative_to(ROOT)} cites files that are not in the repository: {missing}"


# ----------------------------------------------------------------------------------- tracked files

def tracked_text_files():
    try:
        names = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True,
                               timeout=60).stdout.decode().split("\0")
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout: the tracked files cannot be listed")
    files = {}
    for name in filter(None, names):
        path = ROOT / name
        if not path.is_file():
            continue
        data = path.read_bytes()
        if b"\0" in data[:8192]:
            continue                       # binary (figures, archives)
        try:
            files[name] = data.decode("utf-8")
        except UnicodeDecodeError:
            continue
    return files


def offending_lines(files, needles, pattern=None):
    hits = []
    for name, text in files.items():
        for number, line in enumerate(text.splitlines(), 1):
            if any(n in line for n in needles) or (pattern and pattern.search(line)):
                hits.append(f"{name}:{number}: {line.strip()[:120]}")
    return hits


def test_no_tracked_file_names_a_path_of_this_machine():
    files = {name: text for name, text in tracked_text_files().items() if name != SAMPLE_FALLBACK}
    hits = offending_lines(files, MACHINE_PATHS, MACHINE_PATH_RE)
    conftest = (ROOT / SAMPLE_FALLBACK).read_text()
    assert not [n for n in ["/" + "work/", "../" + "shared"] if n in conftest], "conftest names an absolute path"
    assert not hits, ("paths that exist on one development machine only (use --data-dir DIR, SVHN_DIR or "
                      "SVHN_SAMPLE_DIR instead):\n" + "\n".join(hits))


def test_no_tracked_file_cites_design_notes_that_are_not_shipped():
    hits = offending_lines(tracked_text_files(), UNSHIPPED_NOTES)
    assert not hits, ("citations of notes that are not in the repository (cite docs/architecture.md or "
                      "docs/results.md instead):\n" + "\n".join(hits))
