"""Generate the config reference (docs/reference/config.md) from conf/ and the validation code.

Every group, option and key of `conf/` with its default; the allowed range comes from the
`check_int` / `check_float` calls (aelab.checks) in the module that the option's `_target_`
builds (and, for models, aelab.models.base); the description from the key's yaml comment.
Run as a script to print the page; the mkdocs hook (scripts/mkdocs_hooks.py) builds it at
every site build, so the page cannot drift from conf/.
"""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"
SRC = ROOT / "src"


def flat_keys(node: object, prefix: str = "") -> list[tuple[str, object]]:
    """(dotted key, default) for every leaf of a yaml mapping; lists are leaves."""
    if isinstance(node, dict):
        if not node and prefix:
            return [(prefix, {})]
        out = []
        for key, value in node.items():
            out += flat_keys(value, f"{prefix}.{key}" if prefix else str(key))
        return out
    return [(prefix, node)]


def conf_keys() -> dict[str, list[str]]:
    """{yaml path relative to conf/: its dotted keys}, the test's view of conf/."""
    out = {}
    for path in sorted(CONF.rglob("*.yaml")):
        data = yaml.safe_load(path.read_text()) or {}
        out[path.relative_to(CONF).as_posix()] = [k for k, _ in flat_keys(data)]
    return out


def _module_file(target: str) -> Path | None:
    """The source file defining `target` (a re-export in a package's __init__ is followed)."""
    parts = target.split(".")
    for n in range(len(parts), 0, -1):
        cand = SRC.joinpath(*parts[:n])
        for p in (cand.with_suffix(".py"), cand / "__init__.py"):
            if p.is_file():
                name = parts[n] if n < len(parts) else None
                return _follow_import(p, name) if name else p
    return None


def _follow_import(path: Path, name: str) -> Path:
    for node in ast.parse(path.read_text()).body:
        if (
            isinstance(node, ast.ImportFrom)
            and node.module
            and node.level == 0
            and any((a.asname or a.name) == name for a in node.names)
        ):
            return _module_file(f"{node.module}.{name}") or path
    return path


def _const(node: ast.AST) -> object:
    try:
        return ast.literal_eval(node)
    except ValueError:
        return ast.unparse(node)


def ranges_in(path: Path) -> dict[str, str]:
    """{field: allowed range} from the check_int / check_float calls of one source file."""
    out: dict[str, str] = {}
    for call in ast.walk(ast.parse(path.read_text())):
        if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Name)):
            continue
        if call.func.id not in ("check_int", "check_float") or len(call.args) < 3:
            continue
        field = _const(call.args[0])
        low = _const(call.args[2])
        high = _const(call.args[3]) if len(call.args) > 3 else None
        low_open = any(k.arg == "low_open" and _const(k.value) is True for k in call.keywords)
        kind = "integer" if call.func.id == "check_int" else "number"
        left = "(" if low_open else "["
        right = "inf)" if high is None else f"{high}]"
        out[str(field)] = f"{kind} in {left}{low}, {right}"
    return out


_KEY = re.compile(r"^(\s*)([\w+./-]+):(.*)$")


def _inline_comment(rest: str) -> str:
    """The comment after a key's value ('' if none); a '#' inside quotes is part of the value."""
    quote = ""
    for i, ch in enumerate(rest):
        if ch in "'\"" and (not quote or quote == ch):
            quote = "" if quote else ch
        elif ch == "#" and not quote and (i == 0 or rest[i - 1].isspace()):
            return rest[i + 1 :].strip()
    return ""


def descriptions(path: Path) -> dict[str, str]:
    """{dotted key: its description}: the comment on the key's line, else the comment lines
    directly above it at its indentation (a block that opens the file describes the file, not
    its first key). Keys of list items are not tracked (flat_keys treats lists as leaves)."""
    out: dict[str, str] = {}
    stack: list[tuple[int, str]] = []  # (indent, key) of the mappings enclosing the line
    above: list[str] = []
    above_indent, above_opens_file = -1, False
    for number, line in enumerate(path.read_text().splitlines()):
        stripped = line.strip()
        if stripped.startswith("#"):
            indent = len(line) - len(line.lstrip())
            if not above:
                above_indent, above_opens_file = indent, number == 0
            above.append(stripped.lstrip("#").strip())
            continue
        m = _KEY.match(line)
        if m and not stripped.startswith("-"):
            indent = len(m.group(1))
            while stack and stack[-1][0] >= indent:
                stack.pop()
            key = ".".join([k for _, k in stack] + [m.group(2)])
            text = _inline_comment(m.group(3))
            if not text and above and above_indent == indent and not above_opens_file:
                text = " ".join(above)
            if text:
                out[key] = text
            stack.append((indent, m.group(2)))
        above = []
    return out


_GENERIC = {
    "_target_": "the class Hydra instantiates from this mapping",
    "defaults": "Hydra's defaults list: the configs this one composes (later entries win)",
}


def describe(rel: str, key: str, comments: dict[str, dict[str, str]]) -> str:
    """A key's one-line description: its own yaml comment; else the comment on the same key in
    another option of its group; else, for `group.rest`, the comment of that key in the
    options of `group` (an override describes what it overrides); else Hydra's generic keys."""
    group = rel.rpartition("/")[0]
    own = comments[rel].get(key)
    if own:
        return own
    siblings = [r for r in comments if r.rpartition("/")[0] == group and group]
    head, _, rest = key.partition(".")
    overridden = [r for r in comments if r.rpartition("/")[0] == head] if rest else []
    for r, k in [(r, key) for r in siblings] + [(r, x) for r in overridden for x in (rest, key)]:
        if comments[r].get(k):
            return comments[r][k]
    swept = re.match(r"^hydra\.sweeper\.params\.\+?(.+)$", key)
    if swept:  # a sweep's values of a key are described by what they sweep
        what = f"what the sweep gives `{swept.group(1)}`"
        return f"{what}: a comma list (a job per value) or a search space"
    return _GENERIC.get(key.rsplit(".", 1)[-1], "")


def key_cell(key: str) -> str:
    """A key as table code that wraps only after a dot (config-reference.css keeps words
    whole)."""
    return '<code class="config-key">' + key.replace(".", ".<wbr>") + "</code>"


def _targets(node: object, prefix: str = "") -> dict[str, str]:
    """{dotted path of a mapping: its `_target_`} ("" for the top level)."""
    out = {}
    if isinstance(node, dict):
        if isinstance(node.get("_target_"), str):
            out[prefix] = node["_target_"]
        for key, value in node.items():
            out.update(_targets(value, f"{prefix}.{key}" if prefix else str(key)))
    return out


def _range_for(key: str, targets: dict[str, str], base_ranges: dict[str, str]) -> str:
    """The range of a key from the checks of the class its mapping (or the nearest enclosing
    one) builds; a model also has its base class's checks (latent_dim, lr)."""
    parent, _, leaf = key.rpartition(".")
    while True:
        if parent in targets:
            mod = _module_file(targets[parent])
            if mod is None:
                return ""
            ranges = ranges_in(mod)
            if "aelab/models/" in mod.as_posix():
                ranges = {**base_ranges, **ranges}
            return ranges.get(leaf, "")
        if not parent:
            return ""
        parent = parent.rpartition(".")[0]


def _fmt(value: object) -> str:
    text = yaml.safe_dump(value, default_flow_style=True, width=10_000).strip()
    text = text.removesuffix("\n...").removesuffix("...").strip()
    return text.replace("|", "\\|")


def render() -> str:
    lines = [
        "# Config reference",
        "",
        "Generated at every site build by `scripts/config_reference.py` from `conf/` and the",
        "validation code (`aelab.checks.check_int` / `check_float` calls in the module each",
        "option's `_target_` builds); the *description* is the key's yaml comment (on its line",
        "or the lines above it), or that of the key it overrides. Do not edit: change `conf/`",
        "or the checks. The groups and their choices are explained in",
        "[Config groups](config-groups.md).",
        "",
    ]
    base_ranges = ranges_in(SRC / "aelab" / "models" / "base.py")
    comments = {
        p.relative_to(CONF).as_posix(): descriptions(p) for p in sorted(CONF.rglob("*.yaml"))
    }
    groups: dict[str, list[Path]] = {}
    for path in sorted(CONF.rglob("*.yaml")):
        rel = path.relative_to(CONF)
        groups.setdefault(rel.parent.as_posix() if rel.parent.parts else "(primary)", []).append(
            path
        )
    for group, paths in groups.items():
        lines += [f"## `{group}`" if group != "(primary)" else "## Primary configs", ""]
        for path in paths:
            data = yaml.safe_load(path.read_text()) or {}
            rel = path.relative_to(CONF).as_posix()
            option = path.stem if group != "(primary)" else rel
            targets = _targets(data)
            head = f"### `{group}={option}`" if group != "(primary)" else f"### `{rel}`"
            built = ", ".join(f"`{t}`" for t in sorted(set(targets.values())))
            lines += [f"File `conf/{rel}`" + (f", builds {built}." if built else "."), ""]
            lines[-2:-2] = [head, ""]
            keys = flat_keys(data)
            if not keys:
                lines += ["(no keys)", ""]
                continue
            lines += ["| key | default | range | description |", "| --- | --- | --- | --- |"]
            for key, default in keys:
                allowed = _range_for(key, targets, base_ranges)
                text = describe(rel, key, comments).replace("|", "\\|")
                lines.append(f"| {key_cell(key)} | `{_fmt(default)}` | {allowed} | {text} |")
            lines.append("")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.stdout.write(render())
