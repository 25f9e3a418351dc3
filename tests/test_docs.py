"""The docs under docs/ say only what is true: each page is linked from the README, every
``python launch/X.py`` command names flags that launcher defines and config keys its config has,
and the blocks marked ``bash runnable`` run here, offline, on the tiny bundle.

Conventions for a page: commands go in fenced ``bash`` blocks (checked); a block whose info
string is ``bash runnable`` is also executed from the repository root (``python`` is this
interpreter), so it must finish quickly and write only under ``runs/docs/``.
"""

from __future__ import annotations

import glob
import os
import re
import shlex
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PAGES = sorted(glob.glob(os.path.join(ROOT, "docs", "*.md")))
_BLOCK = re.compile(r"^```([^\n]*)\n(.*?)^```", re.S | re.M)
_DEFINE = re.compile(r"flags\.DEFINE_\w+\(\s*[\"'](\w+)[\"']")
_ABSL = {"helpfull", "help", "flagfile", "undefok", "logtostderr", "alsologtostderr", "verbosity", "v"}


def _blocks(page: str) -> list[tuple[str, str]]:
    with open(page, encoding="utf-8") as f:
        return [(info.strip(), body) for info, body in _BLOCK.findall(f.read())]


def _commands(body: str) -> list[list[str]]:
    """The ``python launch/X.py ...`` commands of a block, continuation lines joined, comments dropped."""
    out = []
    for line in body.replace("\\\n", " ").splitlines():
        line = line.split(" #", 1)[0].strip()
        if "launch/" not in line or line.startswith("#"):
            continue
        words = shlex.split(line)
        start = next(i for i, w in enumerate(words) if w.startswith("launch/"))
        out.append(words[start:])
    return out


def _launcher_flags(script: str) -> set[str]:
    with open(os.path.join(ROOT, script), encoding="utf-8") as f:
        source = f.read()
    names = set(_DEFINE.findall(source)) | _ABSL
    if "cli.define_config" in source:
        names.add("config")
    return names


def _config_keys(spec: str) -> set[str]:
    """Every dotted key of the config file ``spec`` (path[:arg])."""
    import importlib.util

    path, _, arg = spec.partition(":")
    loader = importlib.util.spec_from_file_location("docs_config", os.path.join(ROOT, path))
    module = importlib.util.module_from_spec(loader)
    loader.loader.exec_module(module)
    config = module.get_config(arg) if arg else module.get_config()
    keys: set[str] = set()

    def walk(node, prefix):
        for key in node.keys():
            value = node[key]
            keys.add(prefix + key)
            if hasattr(value, "keys"):
                walk(value, prefix + key + ".")

    walk(config, "")
    return keys


def _default_config(script: str) -> str | None:
    with open(os.path.join(ROOT, script), encoding="utf-8") as f:
        found = re.search(r"cli\.define_config\(\s*[\"']([^\"']+)[\"']", f.read())
    return found.group(1) if found else None


def test_there_are_pages_and_the_readme_links_each():
    assert PAGES, "docs/ has no pages"
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        readme = f.read()
    for page in PAGES:
        assert f"docs/{os.path.basename(page)}" in readme, f"README does not link docs/{os.path.basename(page)}"


@pytest.mark.parametrize("page", PAGES, ids=[os.path.basename(p) for p in PAGES])
def test_commands_name_real_flags_and_config_keys(page):
    problems = []
    for info, body in _blocks(page):
        if not info.startswith("bash"):
            continue
        for words in _commands(body):
            script = words[0]
            if not os.path.isfile(os.path.join(ROOT, script)):
                problems.append(f"{script}: no such launcher")
                continue
            names, config = _launcher_flags(script), _default_config(script)
            for word in words[1:]:
                if word.startswith("--config="):
                    config = word.split("=", 1)[1]
            keys = _config_keys(config) if config and "$" not in config else None
            for word in words[1:]:
                if not word.startswith("--"):
                    continue
                name = word[2:].split("=", 1)[0]
                if name.startswith("config."):
                    if keys is not None and name[len("config.") :] not in keys:
                        problems.append(f"{script} {word}: {config} has no key {name[len('config.') :]!r}")
                elif name not in names and not (name.startswith("no") and name[2:] in names):
                    problems.append(f"{script} {word}: no flag --{name}")
    assert not problems, "\n".join(problems)


RUNNABLE = [(p, i) for p in PAGES for i, (info, _) in enumerate(_blocks(p)) if info == "bash runnable"]


@pytest.mark.parametrize("page, index", RUNNABLE, ids=[f"{os.path.basename(p)}:{i}" for p, i in RUNNABLE])
def test_runnable_blocks_run_offline(page, index):
    body = _blocks(page)[index][1]
    env = {
        **os.environ,
        "PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""),
        "HF_HUB_OFFLINE": "1",
        "JAX_PLATFORMS": "cpu",
    }
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", body], cwd=ROOT, env=env, capture_output=True, text=True, timeout=900
    )
    assert result.returncode == 0, f"{os.path.basename(page)} block {index} failed:\n{result.stderr[-3000:]}"
