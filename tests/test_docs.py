"""The documentation cannot rot: the site builds with warnings as errors, the generated config
reference lists every key of conf/, the metrics page every key the code logs, the README's
commands compose and name what exists, and the tutorials' tested shell blocks run on a tiny
budget."""

from __future__ import annotations

import importlib.util
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers.sweeps import tiny_sweep  # noqa: F401 (a fixture)
from omegaconf import DictConfig, ListConfig, OmegaConf

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"
BIN = Path(sys.executable).parent
MARK = "<!-- tested: tests/test_docs.py runs this block on a tiny budget -->"
# every aelab-train of a tested block gets these appended (later overrides win in Hydra)
TINY = (
    "threads=1 trainer.max_epochs=1 ++trainer.limit_train_batches=2 ++trainer.limit_val_batches=1"
    " ++trainer.limit_test_batches=1 data.eval_batch_size=200"
)


def _config_reference():
    spec = importlib.util.spec_from_file_location(
        "config_reference", REPO / "scripts" / "config_reference.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _leaves(node, prefix=""):
    """Dotted keys of an OmegaConf node, unresolved (an independent walk from the generator's)."""
    if isinstance(node, DictConfig):
        keys = list(node.keys())
        if not keys and prefix:
            return [prefix]
        out = []
        for key in keys:
            child = node._get_node(key)
            name = f"{prefix}.{key}" if prefix else str(key)
            out += _leaves(child, name) if isinstance(child, DictConfig) else [name]
        return out
    return [prefix]


def test_config_reference_lists_every_key_of_conf():
    page = _config_reference().render()
    sections = re.split(r"^### ", page, flags=re.M)[1:]
    by_file = {}
    for section in sections:
        m = re.search(r"File `conf/([^`]+)`", section)
        keys = re.findall(r"^\| <code[^>]*>([^<]+(?:<wbr>[^<]+)*)</code> \|", section, flags=re.M)
        by_file[m.group(1)] = {k.replace("<wbr>", "") for k in keys}
    files = sorted(p.relative_to(REPO / "conf").as_posix() for p in (REPO / "conf").rglob("*.yaml"))
    assert sorted(by_file) == files
    for rel in files:
        cfg = OmegaConf.load(REPO / "conf" / rel)
        expected = set(_leaves(cfg)) if not isinstance(cfg, ListConfig) else set()
        assert by_file[rel] == expected, rel


def test_config_reference_ranges_come_from_the_checks():
    page = _config_reference().render()
    vae = page.split("### `model=vae`")[1].split("### ")[0]
    # VAE.__init__: check_float("beta", beta, 0.0); base: check_int("latent_dim", latent_dim, 1)
    key = r"^\| <code[^>]*>model\.<wbr>"
    assert re.search(key + r"beta</code> \| `1\.0` \| number in \[0\.0, inf\) \|", vae, flags=re.M)
    latent = key + r"latent_dim</code> \| `\d+` \| integer in \[1, inf\) \|"
    assert re.search(latent, vae, flags=re.M)


def _reference_rows(page: str) -> list[tuple[str, str]]:
    """(key, description) of every key row of the generated config reference."""
    row = r"^\| <code[^>]*>(.+?)</code> \| .* \| (.*) \| (.*) \|$"
    return [(k.replace("<wbr>", ""), d) for k, _, d in re.findall(row, page, flags=re.M)]


def test_every_key_of_the_config_reference_has_a_description():
    rows = _reference_rows(_config_reference().render())
    assert len(rows) > 400  # every key of conf/, not a parse that found nothing
    assert [k for k, d in rows if not d.strip()] == []


def test_a_description_is_the_keys_yaml_comment_or_the_one_it_overrides():
    page = _config_reference().render()
    section = lambda head: page.split(f"### `{head}`")[1].split("### ")[0]  # noqa: E731
    mnist = dict(_reference_rows(section("data=mnist")))
    # the comment on the line: `binarize: none          # none | dynamic | static`
    assert mnist["binarize"] == "none \\| dynamic \\| static"
    # the comment on the line above (trainer/default.yaml's profiler)
    trainer = dict(_reference_rows(section("trainer=default")))
    assert trainer["profiler"].startswith("where the time goes")
    # debug=smoke's trainer.max_epochs overrides trainer/default.yaml's max_epochs
    smoke = dict(_reference_rows(section("debug=smoke")))
    assert smoke["trainer.max_epochs"] == trainer["max_epochs"]


def test_the_config_reference_wraps_keys_only_after_a_dot():
    page = _config_reference().render()
    assert '<code class="config-key">model.<wbr>beta</code>' in page
    css = (REPO / "docs" / "stylesheets" / "config-reference.css").read_text()
    assert "code.config-key" in css and "word-break: normal" in css
    assert "stylesheets/config-reference.css" in (REPO / "mkdocs.yml").read_text()


@pytest.mark.slow
def test_site_builds_with_warnings_as_errors(tmp_path):
    """~10 s: mkdocs build --strict (broken links, anchors, API references all fail it)."""
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / "site" / "reference" / "config" / "index.html").is_file()


def tutorial_blocks() -> list[tuple[str, str]]:
    out = []
    for page in sorted((DOCS / "tutorials").glob("*.md")):
        text = page.read_text()
        for n, m in enumerate(re.finditer(re.escape(MARK) + r"\n```bash\n(.*?)```", text, re.S)):
            out.append((f"{page.stem}-{n}", m.group(1)))
    return out


def test_every_tutorial_has_a_tested_block():
    pages = {name.rsplit("-", 1)[0] for name, _ in tutorial_blocks()}
    assert pages == {p.stem for p in (DOCS / "tutorials").glob("*.md")}


@pytest.mark.slow
@pytest.mark.mnist
@pytest.mark.parametrize("block", tutorial_blocks(), ids=lambda b: b[0])
def test_tutorial_block_runs(block, tmp_path, mnist_dir):
    """A tutorial's tested block, verbatim in bash from a fresh folder holding the venv, with
    every aelab-train on a tiny budget (first-run ~15 s, each 4-job sweep ~60 s)."""
    _, script = block
    (tmp_path / ".venv").symlink_to(BIN.parent)
    prelude = f'aelab-train() {{ command aelab-train "$@" {TINY}; }}\n'
    env = {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
        "AELAB_DATA_DIR": str(mnist_dir),
        "PYTHONPATH": str(REPO / "tests"),
    }
    env.pop("AELAB_ROOT", None)
    assert shutil.which("bash")
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", prelude + script],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert done.returncode == 0, (done.stdout[-2000:], done.stderr[-3000:])
    metrics = list((tmp_path / "outputs").rglob("metrics.json"))
    assert metrics and all('"completed"' in m.read_text() for m in metrics), metrics
    if "aelab-report" in script:
        assert list((tmp_path / "outputs" / "multiruns").glob("*/*/summary.md"))


@pytest.mark.slow
@pytest.mark.mnist
def test_notebook_loads_a_sweep_and_plots(tiny_sweep, tmp_path, monkeypatch):  # noqa: F811
    """notebooks/compare_sweep.ipynb executed (nbclient) as Jupyter runs it, in the notebooks/
    folder of a checkout where `aelab-train -m ...` made the shared tiny sweep: with no
    AELAB_SWEEP it finds that sweep, its table has a row per job, and its figure is drawn inline
    (an image output, as Jupyter shows it) and written (the docs show the same plot). ~15 s
    past the sweep."""
    import nbclient
    import nbformat

    checkout = tmp_path / "checkout"
    made = checkout / "outputs" / "multiruns" / "2030-01-01" / "12-00-00_0123456ab_train"
    skipped = shutil.ignore_patterns("checkpoints", "images", "*.png")
    shutil.copytree(tiny_sweep, made, ignore=skipped)
    (checkout / "notebooks").mkdir()
    nb = nbformat.read(REPO / "notebooks" / "compare_sweep.ipynb", as_version=4)
    figure = tmp_path / "sweep.png"
    for name in ("AELAB_SWEEP", "AELAB_ROOT", "MPLBACKEND"):  # the kernel inherits these
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AELAB_NOTEBOOK_FIGURE", str(figure))
    where = {"metadata": {"path": checkout / "notebooks"}}
    client = nbclient.NotebookClient(nb, timeout=300, resources=where)
    client.execute()
    table = nb.cells[1].outputs[0]["data"]["text/plain"]
    jobs = sorted(p.name for p in made.iterdir() if (p / "metrics.json").is_file())
    assert len(jobs) == 4 and all(job in table for job in jobs), table
    shown = [o for o in nb.cells[-1].outputs if "image/png" in o.get("data", {})]
    assert len(shown) == 1  # drawn inline once, not suppressed by a headless backend
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# --- every metric key the code logs is on the metrics reference page --------------------------
# modules that log figures under a full literal name (`self.log("train/beta", ...)`); the rest
# of the keys are built from dict keys (`f"test/{k}"`) and collected by running the code below
LOGGING_SOURCES = (
    "models",
    "schedules",
    "metrics",
    "callbacks/eval_suite.py",
    "callbacks/generation_figures.py",
    "callbacks/disentanglement.py",
)
LITERAL_KEY = re.compile(
    r"(?<![\w/.])((?:train|val|test|disent|gen)/[a-z][a-z0-9_]*(?:/[a-z][a-z0-9_]*)*)(?![\w{/<])"
)
GEN_SET = re.compile(r"^test/gen/([a-z_]+)/([a-z_]+)$")


def _literal_metric_keys() -> set[str]:
    """Full metric names written as string literals in the logging modules."""
    import ast

    src = REPO / "src" / "aelab"
    files = []
    for rel in LOGGING_SOURCES:
        path = src / rel
        files += sorted(path.rglob("*.py")) if path.is_dir() else [path]
    keys = set()
    for path in files:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                keys |= set(LITERAL_KEY.findall(node.value))
    # the suite logs its figures, gen/* among them, under test/
    return {f"test/{k}" if k.startswith("gen/") else k for k in keys}


def logged_metric_keys() -> set[str]:
    """Every figure name the code logs, found by running it on tiny synthetic data (~5 s): each
    model preset of conf/model through one validation and one test step (with input noise, so
    the noise-run figures appear) and its loss (`train/`), the test-time suite (probes, a
    one-class AUROC), the generation scores with a stand-in feature map, each KL schedule's
    per-step figures, and the disentanglement scores on random codes; plus the literal names
    of the logging modules. Per-unit keys are normalised (`kl_dim_{i}`)."""
    import numpy as np
    import torch
    from conftest import compose_cfg, synthetic_images

    from aelab.callbacks.eval_suite import EvaluationSuite
    from aelab.callbacks.generation_figures import GenerationFigures
    from aelab.data.mnist import InMemoryImages
    from aelab.metrics.disentanglement_scores import all_scores
    from aelab.train import build_model

    out = REPO / "outputs" / "unused"  # composed, never written
    train = InMemoryImages(*synthetic_images(120, seed=0))
    test = InMemoryImages(*synthetic_images(80, seed=1))
    x, y = test.tensors()
    suite = EvaluationSuite(
        iw_samples=2, iw_images=None, mi_images=None, tc_images=None, probe_train_size=None,
        knn_k=3, batch_size=80, images=False, pca_cache=False,
    )  # fmt: skip
    gen = GenerationFigures(
        enabled=True, n_samples=20, kid_subsets=2, kid_subset_size=10, fit_size=None
    )
    projection = torch.randn(784, 4, generator=torch.Generator().manual_seed(0)).double()

    def features(images):
        return images.flatten(1).double() @ projection

    keys = _literal_metric_keys()
    torch.manual_seed(0)
    for preset in sorted(p.stem for p in (REPO / "conf" / "model").glob("*.yaml")):
        model = build_model(compose_cfg([f"model={preset}", "noise=gaussian"], out))
        if getattr(model, "dataset_size", 0) is None:  # β-TCVAE: N comes from the data
            model.dataset_size = 1000
        model.eval()
        with torch.no_grad():
            for stage in ("val", "test"):
                model.evaluate_batch((x, y), 0, stage)
                keys |= {f"{stage}/{k}" for k in model.running_means(stage).compute_and_reset()}
            parts, _ = model.loss(x, x)
        keys |= {f"train/{k}" for k in parts}  # training_step's running means
        metrics, _ = suite.evaluate(model, test, train, classes=[0])
        scores, _ = gen.scores(model, features, train.tensors()[0], x[:40], x[40:], 0)
        keys |= {f"test/{k}" for k in {**metrics, **scores}}
    for schedule in sorted(p.stem for p in (REPO / "conf" / "kl_schedule").glob("*.yaml")):
        model = build_model(compose_cfg(["model=vae", f"kl_schedule={schedule}"], out))
        logged: list[str] = []
        model.log = lambda name, *args, _into=logged, **kwargs: _into.append(name)
        if model.kl_schedule.varies:
            model._log_schedule(1.0)
        keys |= set(logged)
    rng = np.random.default_rng(0)
    codes, factors = rng.normal(size=(200, 3)), rng.integers(0, 3, size=(200, 2))
    disent = all_scores(codes, factors, num_train=100, num_test=50, num_eval=20, batch_size=8)
    keys |= {f"disent/{k}" for k in disent}
    return {re.sub(r"kl_dim_\d+$", "kl_dim_{i}", k) for k in keys}


def documented_metric_keys() -> tuple[set[str], str]:
    """The keys of the metrics page's "Every logged figure" tables (a row's key under each of
    its prefixes), and that section's text."""
    page = (DOCS / "reference" / "metrics.md").read_text()
    section = page.split("\n## Every logged figure\n")[1].split("\n## ")[0]
    keys = set()
    for key, prefixes in re.findall(r"^\| `([^`]+)` \| ((?:`[a-z]+/` ?)+) \|", section, re.M):
        keys |= {prefix + key for prefix in re.findall(r"`([a-z]+/)`", prefixes)}
    return keys, section


def test_metrics_page_lists_every_key_the_code_logs():
    """docs/reference/metrics.md has one row per figure name the code can log, and no row for
    a name it cannot (the generation sets `<set>`: each named in the section)."""
    code, sets = set(), set()
    for key in logged_metric_keys():
        m = GEN_SET.match(key)
        if m:
            sets.add(m.group(1))
            key = f"test/gen/<set>/{m.group(2)}"
        code.add(key)
    documented, section = documented_metric_keys()
    assert len(code) > 60 and {"train/beta", "test/gen/feature_net_acc"} <= code
    missing, stale = code - documented, documented - code
    assert not missing, f"logged but not on docs/reference/metrics.md: {missing}"
    assert not stale, f"documented but not logged by the code: {stale}"
    assert {"prior", "gmm", "empirical_codes", "recon", "floor"} <= sets
    assert all(f"`{s}`" in section for s in sets), sets


# --- every command of the README works: programs, flags, overrides, make targets ---------------
README = REPO / "README.md"
COMMAND = re.compile(r"(?:\.venv/bin/)?(?:aelab-[a-z-]+|make|pip|tensorboard)\b")
PLACEHOLDER = re.compile(r"<[^>]*>")
OVERRIDE = re.compile(r"^~?\+{0,2}[a-z_][\w/.]*=\S")
MAKE_VARIABLE = re.compile(r"^[A-Z_]+=")


def readme_commands() -> list[str]:
    """The README's commands: each line of its bash blocks (comments cut), each inline code
    span that starts with a program, each inline span of overrides alone (`model=vae
    model.latent_dim=8`, checked as `aelab-train <span>`) and of make variables alone
    (`PYTEST_ARGS=...`, as `make <span>`); whitespace normalised."""
    text = README.read_text()
    out = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        for line in block.splitlines():
            line = re.sub(r"\s+#.*$", "", line).strip()
            if line:
                out.append(line)
    for span in re.findall(r"(?<!`)`([^`]+)`(?!`)", text):
        span = " ".join(span.split())
        if COMMAND.match(span):
            out.append(span)
        elif all(OVERRIDE.match(t) for t in shlex.split(span)):
            out.append(f"aelab-train {span}")
        elif all(MAKE_VARIABLE.match(t) for t in shlex.split(span)):
            out.append(f"make {span}")
    return out


def _makefile() -> tuple[set[str], str]:
    text = (REPO / "Makefile").read_text()
    return set(re.findall(r"^([a-z][\w-]*):", text, re.M)), text


def _compose_sweep(overrides: list[str], name: str, tmp_path: Path) -> int:
    """Compose `name` (train or eval) with `overrides` as the program would: each value of a
    sweep override (`a=1,2`) and of the config's own `hydra.sweeper.params` on its own; the
    training configs also build their model and pass the trainer's checks (no data, no
    training). Returns the number of configs composed."""
    from conftest import compose_cfg
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.utils import get_class

    from aelab import CONFIG_DIR
    from aelab.train import build_model, check_trainer

    parser = OverridesParser.create()
    swept = [o for o in parser.parse_overrides(overrides) if o.is_sweep_override()]
    plain = [o.input_line for o in parser.parse_overrides(overrides) if not o.is_sweep_override()]
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        full = compose(name, overrides=plain, return_hydra_config=True)
    if full.hydra.launcher.get("_target_"):  # hydra/launcher=slurm: its plugin is installed
        get_class(full.hydra.launcher._target_)
    variants = [[]]
    for override in swept:
        variants += [[f"{override.key_or_group}={v}"] for v in override.sweep_string_iterator()]
    for key, values in (full.hydra.sweeper.get("params") or {}).items():
        (override,) = parser.parse_overrides([f"{key}={values}"])
        variants += [[f"{key}={v}"] for v in override.sweep_string_iterator()]
    for variant in variants:
        cfg = compose_cfg(plain + variant, tmp_path, name)
        if name == "train":
            check_trainer(cfg.trainer)
            build_model(cfg)
    return len(variants)


def check_readme_command(command: str, tmp_path: Path) -> None:
    """One README command works as written, without training or downloading: make targets and
    variables exist; aelab-train/aelab-eval overrides compose (every sweep value) and the model
    builds; aelab-report's flags exist; the pip wheel's name is this version's; TensorBoard is
    installed; another of pyproject's programs: its flags exist. A command of another program
    fails: teach this check about it."""
    for token in command.split():  # `experiment=reference/<name>`: each preset there
        group, _, value = token.partition("=")
        if PLACEHOLDER.search(value) and (REPO / "conf" / group).is_dir():
            presets = sorted((REPO / "conf" / group).glob(PLACEHOLDER.sub("*", value) + ".yaml"))
            assert presets, token
            for preset in presets:
                name = preset.relative_to(REPO / "conf" / group).with_suffix("").as_posix()
                check_readme_command(command.replace(token, f"{group}={name}"), tmp_path)
            return
    pyproject = (REPO / "pyproject.toml").read_text()
    version = re.search(r'^version = "([^"]+)"', pyproject, re.M).group(1)
    scripts = pyproject.split("[project.scripts]")[1].split("\n[")[0]
    programs = dict(re.findall(r'^([\w-]+) = "([\w.:]+)"', scripts, re.M))
    args = shlex.split(PLACEHOLDER.sub("x", command))
    program = Path(args[0]).name
    if program == "make":
        targets, makefile = _makefile()
        names = [a for a in args[1:] if "=" not in a]  # none: the first target, setup
        assert all(n in targets for n in names), (command, sorted(targets))
        for var, value in (a.split("=", 1) for a in args[1:] if "=" in a):
            assert f"$({var})" in makefile, (command, var)
            if var == "ARGS":  # passed to aelab-train
                check_readme_command(f"aelab-train {value}", tmp_path)
    elif program in ("aelab-train", "aelab-eval"):
        assert program in programs, command
        flags = [a for a in args[1:] if a.startswith("-")]
        assert set(flags) <= {"-m", "--multirun"}, command
        overrides = [a for a in args[1:] if not a.startswith("-") and a != "..."]
        name = "train" if program == "aelab-train" else "eval"
        assert _compose_sweep(overrides, name, tmp_path) >= 1
    elif program in programs:  # an argparse program (aelab-report, aelab-prepare-data)
        flags = [a.split("=")[0] for a in args[1:] if a.startswith("-")]
        if flags:
            module, function = programs[program].split(":")
            code = f"import {module} as m; m.{function}(['--help'])"
            done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
            assert all(f in done.stdout for f in flags), (command, done.stdout)
    elif program == "pip":
        wheels = [a for a in args if a.endswith(".whl")]
        assert all(Path(w).name == f"aelab-{version}-py3-none-any.whl" for w in wheels), command
        assert args[1] in ("wheel", "install"), command
    elif program == "tensorboard":
        assert importlib.util.find_spec("tensorboard") is not None
        assert set(a for a in args[1:] if a.startswith("-")) <= {"--logdir"}, command
    else:
        raise AssertionError(f"README command of an unknown program: {command}")


def test_readme_lists_the_commands_this_test_checks():
    commands = readme_commands()
    programs = {Path(c.split()[0]).name for c in commands}
    assert {"make", "aelab-train", "aelab-eval", "aelab-report", "pip", "tensorboard"} <= programs
    assert any(c.startswith("make train ARGS=") for c in commands), commands
    assert "aelab-train model=vae model.latent_dim=8 model.beta=4" in commands


@pytest.mark.parametrize("command", readme_commands())
def test_readme_command_works(command, tmp_path):
    """Each README command composes (every sweep value) and builds its model, or names a make
    target, a flag, a wheel, a program that exist (~1 s each; the tutorials' tests run the
    same programs for real on a tiny budget)."""
    check_readme_command(command, tmp_path)


def _commands_named(text: str) -> set[str]:
    return set(re.findall(r"`(aelab-[a-z-]+)`", text))


def test_the_docs_name_every_command_the_wheel_installs():
    import tomllib

    scripts = set(tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"])
    readme = (REPO / "README.md").read_text()
    listed = readme.split("## Install with pip", 1)[1].split("```", 1)[0]
    assert _commands_named(listed) == scripts
    pip_page = (REPO / "docs" / "how-to" / "pip-install.md").read_text().split("```", 1)[0]
    assert _commands_named(pip_page) == scripts


def test_the_documented_hparams_column_order_is_the_rows(make_cfg):
    from omegaconf import OmegaConf

    from aelab.run.record import hparams_row

    cfg = OmegaConf.to_container(make_cfg("model=vae", "lr_scheduler=step"), resolve=True)
    keys = list(hparams_row(cfg))
    # first-sweep.md: the model and its fields, noise, net, optimizer, the schedules, the data,
    # seed and the training length
    documented = ["model", "latent_dim", "beta", "noise", "net", "optimizer", "lr_scheduler."]
    documented += ["batch_size", "binarize", "seed", "max_epochs"]
    positions = [next(i for i, k in enumerate(keys) if k.startswith(d)) for d in documented]
    assert positions == sorted(positions), keys
    page = (REPO / "docs" / "tutorials" / "first-sweep.md").read_text()
    assert "in the order `aelab.run.record.hparams_row` builds them" in page


def test_the_docs_links_resolve_in_the_repository():
    # read on a forge, the docs have no generated pages: a link must name a file in the checkout
    dead = []
    for page in [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]:
        for target in re.findall(r"\]\(([^)#\s]+\.md)(?:#[^)]*)?\)", page.read_text()):
            if "://" not in target and not (page.parent / target).resolve().is_file():
                dead.append(f"{page.relative_to(REPO)} -> {target}")
    assert dead == []
