"""Sharing a trained model: `aelab-export <run> <dir>` writes the folder `huggingface_hub` pushes,
`aelab.from_pretrained(<dir or hub id>)` loads the model from it.

The folder (every file but the manifest listed with its SHA-256 in `checksums.json`):

    model.safetensors   the weights (the checkpoint's state_dict), as safetensors
    model.json          the model's class and constructor arguments (its hyper-parameters)
    config.yaml         the run's composed config, resolved, as the checkpoint stores it
    metrics.json        the run's figures (metrics.json of the run folder)
    samples.png         an 8 x 8 grid of the model's samples
    README.md           the model card: model, data, objective, figures, the training command

    aelab-export outputs/runs/2026-01-01/12-00-00_1234abcd_train exported/
    aelab-export outputs/runs/... exported/ --push user/mnist-vae
    model = aelab.from_pretrained("exported/")   # or a hub id: "user/mnist-vae"
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from aelab.api import load_run, model_from_checkpoint
from aelab.checks import ConfigError
from aelab.models.base import AutoencoderModule
from aelab.run.checkpoint import CHECKPOINT_KEY
from aelab.run.record import hparams_row

WEIGHTS = "model.safetensors"
MODEL = "model.json"
CONFIG = "config.yaml"
METRICS = "metrics.json"
SAMPLES = "samples.png"
CARD = "README.md"
MANIFEST = "checksums.json"
FILES = (WEIGHTS, MODEL, CONFIG, METRICS, SAMPLES, CARD)
GRID = 8  # samples.png: GRID x GRID images


class PretrainedFolderError(ValueError):
    """A folder `from_pretrained` refuses: not an export, or a file missing or altered since
    `aelab-export` wrote it; the message names the folder and the file."""


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _sample_grid(model: AutoencoderModule, path: Path) -> str:
    """Write GRID x GRID images of `model` to `path`; returns what they are, for the card.

    A model with a prior (`sample`: the VAE family) draws from it; any other decodes
    z ~ N(0, I), which is not its distribution of codes (the card says so).
    """
    import torch
    from torchvision.utils import save_image

    generator = torch.Generator().manual_seed(0)
    n = GRID * GRID
    with torch.no_grad():
        if hasattr(model, "sample"):
            images, what = model.sample(n, generator=generator), "samples from the prior"
        else:
            z = torch.randn(n, model.latent_dim, generator=generator)
            images = model.decode(z).sigmoid()
            what = "decoded z ~ N(0, I) (a model without a prior: not its codes' distribution)"
    save_image(images.float().clamp(0, 1), path, nrow=GRID)
    return what


def _command(run_dir: Path) -> str:
    try:
        argv = json.loads((run_dir / "run.json").read_text())["argv"]
    except (OSError, ValueError, KeyError, TypeError):
        return "(not recorded: the run folder has no run.json)"
    import shlex

    return shlex.join(["aelab-train", *argv[1:]])


def _figure(value: Any) -> str:
    return f"{value:.6g}" if isinstance(value, float) else str(value)


def _card(config: dict[str, Any], metrics: dict[str, Any], command: str, samples: str) -> str:
    """The model card: the hub's YAML front matter, then model, data, objective, figures."""
    row = hparams_row(config)
    model_cfg = config.get("model") or {}
    data_cfg = config.get("data") or {}
    figures = {k: v for k, v in metrics.items() if isinstance(v, (int, float))}
    lines = [
        "---",
        "library_name: aelab",
        "tags: [autoencoder, aelab, pytorch-lightning]",
        "---",
        "",
        f"# {str(model_cfg.get('_target_', 'model')).rsplit('.', 1)[-1]} trained with aelab",
        "",
        "Load it with `model = aelab.from_pretrained(<this folder or hub id>)`: "
        "`model.encode(x)` (x: B x C x H x W in [0, 1] -> B x latent_dim), `model.decode(z)` "
        "(pixel logits), `model.reconstruct(x)`.",
        "",
        "## Model",
        "",
        f"- class: `{model_cfg.get('_target_')}`",
        f"- latent_dim: {model_cfg.get('latent_dim')}",
        "",
        "## Data",
        "",
        f"- `{data_cfg.get('_target_')}`",
        "",
        "## Objective",
        "",
        "The loss minimised, in nats per image (the model's `loss`); its hyper-parameters:",
        "",
        "| name | value |",
        "| --- | --- |",
        *(f"| {k} | {_figure(v)} |" for k, v in row.items()),
        "",
        "## Figures (metrics.json)",
        "",
        "| metric | value |",
        "| --- | --- |",
        *(f"| {k} | {_figure(v)} |" for k, v in figures.items()),
        "",
        f"## Samples\n\n![{samples}]({SAMPLES})\n\n{samples}.",
        "",
        "## How it was trained",
        "",
        f"```\n{command}\n```",
        "",
        f"`{CONFIG}` holds the composed config; `{MANIFEST}` the SHA-256 of every file.",
        "",
    ]
    return "\n".join(lines)


def export(run_dir: str | Path, out_dir: str | Path, checkpoint: str = "best") -> Path:
    """Write the folder of the run in `run_dir` (its `checkpoint`: "best" or "last") to `out_dir`.

    Raises aelab.api.RunFolderError for a folder that is not a finished run, and ValueError when
    `out_dir` exists and is not empty.
    """
    from safetensors.torch import save_file

    run = load_run(run_dir, checkpoint=checkpoint)
    out = Path(out_dir).expanduser().resolve()
    if out.exists() and any(out.iterdir()):
        raise ValueError(f"{out}: allowed an empty or new folder (this one holds files)")
    out.mkdir(parents=True, exist_ok=True)
    model = run.model
    # contiguous copies: safetensors refuses views and tensors sharing memory
    save_file({k: v.detach().contiguous().clone() for k, v in model.state_dict().items()},
              out / WEIGHTS)  # fmt: skip
    model_class = f"{type(model).__module__}.{type(model).__qualname__}"
    hparams = OmegaConf.to_container(OmegaConf.create(dict(model.hparams)), resolve=True)
    (out / MODEL).write_text(json.dumps({"model_class": model_class, "hyper_parameters": hparams},
                                        indent=2) + "\n")  # fmt: skip
    config = OmegaConf.to_container(run.config, resolve=True)
    (out / CONFIG).write_text(OmegaConf.to_yaml(run.config))
    if run.paths.metrics.is_file():
        shutil.copyfile(run.paths.metrics, out / METRICS)
    else:
        (out / METRICS).write_text("{}\n")
    samples = _sample_grid(model, out / SAMPLES)
    card = _card(config, run.metrics, _command(run.paths.run_dir), samples)
    (out / CARD).write_text(card)
    manifest = {name: _sha256(out / name) for name in FILES}
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return out


def _checked_folder(folder: Path) -> None:
    """Refuse (PretrainedFolderError, one line) a folder with a file missing or altered."""
    if not (folder / MANIFEST).is_file():
        raise PretrainedFolderError(f"{folder}: not an aelab export ({MANIFEST} missing)")
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
    except ValueError:
        raise PretrainedFolderError(f"{folder}: {MANIFEST} is not JSON (altered)") from None
    for name in FILES:
        path = folder / name
        if name not in manifest:
            raise PretrainedFolderError(f"{folder}: {MANIFEST} does not list {name} (altered)")
        if not path.is_file():
            raise PretrainedFolderError(f"{folder}: {name} missing")
        if _sha256(path) != manifest[name]:
            raise PretrainedFolderError(
                f"{folder}: {name} altered since aelab-export wrote it (SHA-256 differs)"
            )


def from_pretrained(name: str | Path) -> AutoencoderModule:
    """The model an `aelab-export` folder holds: on the CPU, eval mode, ready for `encode`
    (B x C x H x W in [0, 1] -> B x latent_dim), `decode`, `sample` (the VAE family) and
    `Trainer.test`. `name`: the folder, or a Hugging Face Hub id (downloaded through
    `huggingface_hub.snapshot_download`).

    Raises PretrainedFolderError naming the folder and the file when a file is missing or its
    SHA-256 differs from `checksums.json`; ConfigError when the model class cannot be imported.
    """
    from safetensors.torch import load_file

    folder = Path(name).expanduser()
    if not folder.is_dir():
        from huggingface_hub import snapshot_download

        folder = Path(snapshot_download(repo_id=str(name)))
    folder = folder.resolve()
    _checked_folder(folder)
    spec = json.loads((folder / MODEL).read_text())
    config = OmegaConf.to_container(OmegaConf.load(folder / CONFIG), resolve=True)
    ckpt = {  # the shape of a checkpoint, for the loader aelab-eval uses
        CHECKPOINT_KEY: {"model_class": spec["model_class"], "config": config},
        "hyper_parameters": spec["hyper_parameters"],
        "state_dict": load_file(folder / WEIGHTS),
    }
    model = model_from_checkpoint(ckpt)
    model.eval()
    return model


def _no_token(repo_id: str) -> str:
    return (
        f"--push {repo_id} needs a Hugging Face token: none found "
        "(set HF_TOKEN, or log in with `hf auth login`)"
    )


def push(folder: Path, repo_id: str) -> str:
    """Upload `folder` to the hub repo `repo_id` (created if new); returns the commit's URL.

    Raises ValueError when no Hugging Face token is set, saying where one goes.
    """
    from huggingface_hub import HfApi, get_token

    token = get_token()
    if not token:
        raise ValueError(_no_token(repo_id))
    api = HfApi(token=token)
    api.create_repo(repo_id, exist_ok=True)
    info = api.upload_folder(folder_path=str(folder), repo_id=repo_id)
    return str(getattr(info, "commit_url", info))


def main(argv: list[str] | None = None) -> None:
    """aelab-export: one-line errors (exit 2) for a bad run folder, output folder or token."""
    parser = argparse.ArgumentParser(prog="aelab-export", description=__doc__.split("\n")[0])
    parser.add_argument("run", help="the run folder aelab-train made")
    parser.add_argument("dir", help="the folder to write (new or empty)")
    parser.add_argument("--checkpoint", default="best", choices=("best", "last"))
    parser.add_argument("--push", metavar="REPO_ID", help="then upload to this hub repo")
    args = parser.parse_args(argv)
    try:
        if args.push:  # refused before anything is written
            from huggingface_hub import get_token

            if not get_token():
                raise ValueError(_no_token(args.push))
        out = export(args.run, args.dir, checkpoint=args.checkpoint)
        print(f"exported:  {out}", flush=True)
        if args.push:
            print(f"pushed:    {push(out, args.push)}", flush=True)
    except (ConfigError, ValueError) as err:
        print(f"aelab-export: error: {err}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
