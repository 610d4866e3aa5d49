"""What every autoencoder shares: corrupt -> encode -> decode -> loss, epoch means, checkpoints.

Subclasses say the maths (`encode`, `loss`); this class does the bookkeeping around it. Hyper-
parameters are stored as plain containers so checkpoints load with `torch.load(weights_only=True)`.
"""

from __future__ import annotations

import inspect
import os
import types
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, ListConfig, OmegaConf
from torch import Tensor
from torchmetrics.functional.image import (
    peak_signal_noise_ratio,
    structural_similarity_index_measure,
)
from typing_extensions import override

import aelab
from aelab.checks import ConfigError, build, check_choice, check_float, check_int, in_group
from aelab.losses import RECON_LOSSES, bernoulli_nll
from aelab.metrics import RunningMeans
from aelab.noise import Noise
from aelab.run.checkpoint import CHECKPOINT_KEY
from aelab.schedules import KLSchedule, position
from aelab.schedules.lr import (
    check_lr_scheduler,
    check_plateau_can_be_fed,
    is_plateau,
    total_steps,
)

EVAL_NOISE_SEED = 1234  # the corrupted val/test inputs are the same in every run and re-evaluation
TRAIN_MEANS_KEY = "aelab_train_means"  # the epoch's training sums so far, for resume

DEFAULT_NET = {"_target_": "aelab.nets.MLPNet", "hidden": [128, 64]}
DEFAULT_NOISE = {"_target_": "aelab.noise.Noise"}
DEFAULT_OPTIMIZER = {"_target_": "torch.optim.Adam", "lr": 1e-3}
DEFAULT_KL_SCHEDULE = {"_target_": "aelab.schedules.KLSchedule"}


def plain(cfg: Mapping[str, Any] | None, default: dict[str, Any]) -> dict[str, Any]:
    """A DictConfig or mapping as a plain dict (what a weights-only checkpoint can hold)."""
    if cfg is None:
        return dict(default)
    if isinstance(cfg, DictConfig):
        return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]
    return dict(cfg)


def constructor_arguments(frame: types.FrameType | None) -> dict[str, Any]:
    """The arguments of the `__init__` calls of an AutoencoderModule under construction, from
    `frame` (the base's own) out to the class the caller named, as Lightning's
    `save_hyperparameters()` collects them (`collect_init_args`): each level's named arguments
    and `**kwargs`, an outer level's value over an inner one's, and as plain containers (a
    weights-only checkpoint holds no DictConfig or ListConfig).
    """
    from pytorch_lightning.utilities.parsing import collect_init_args

    found: dict[str, Any] = {}
    for level in collect_init_args(frame, [], classes=(AutoencoderModule,)):
        found.update(level)
    return {
        k: OmegaConf.to_container(v, resolve=True) if isinstance(v, DictConfig | ListConfig) else v
        for k, v in found.items()
    }


def build_group(cfg: dict[str, Any], group: str) -> Any:
    """`cfg` built as the node `group` of a config, as aelab-train composes it, so that hydra's
    own messages name it (`full_key: net`), as they name the optimizer that train builds.

    Raises ConfigError naming `group.field`.
    """
    return build(OmegaConf.create({group: cfg})[group], group)


def _parameter_count(nets: Any, image_shape: tuple[int, ...], code_factor: int, d: int) -> int:
    """Parameters of the encoder and decoder `nets` builds, counted on the meta device (no
    memory taken)."""
    with torch.device("meta"):
        modules = (nets.encoder(image_shape, code_factor * d), nets.decoder(d, image_shape))
    return sum(p.numel() for m in modules for p in m.parameters())


def available_memory_bytes() -> int | None:
    """The memory the system can still give this process (Linux), None where unknown."""
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def check_fits_in_memory(
    nets: Any,
    image_shape: tuple[int, ...],
    code_factor: int,
    latent_dim: int,
    net_cfg: Mapping[str, Any] | None = None,
) -> None:
    """Refuse a model whose float32 parameters (x 4: Adam's two moments and the gradient) cannot
    be had, before torch fails to allocate them naming only the model's class.

    Raises ConfigError naming `latent_dim` (reported as `model.latent_dim`) when the latent size
    makes it too large, else `net` (its widths).
    """
    available = available_memory_bytes()
    try:
        count = _parameter_count(nets, image_shape, code_factor, latent_dim)
    except Exception:  # noqa: BLE001 - a net that cannot be built on the meta device: unchecked
        return
    if available is None or 16 * count <= available:
        return
    need = f"{count:.3g} parameters, {16 * count / 2**30:.3g} GiB with Adam's state"
    allowed = f"a size whose training fits in memory ({need}; {available / 2**30:.3g} GiB free)"
    if 16 * _parameter_count(nets, image_shape, code_factor, 1) <= available:
        raise ConfigError("latent_dim", latent_dim, allowed)
    values = {k: v for k, v in (net_cfg or {}).items() if not k.startswith("_")}
    raise ConfigError("net", values or nets.__class__.__name__, allowed, grouped=True)


def ssim(images: Tensor, target: Tensor) -> Tensor:
    """Mean SSIM over the batch (per-image SSIM with torchmetrics' Gaussian window)."""
    if images.device.type != "cpu":
        return structural_similarity_index_measure(
            images, target, data_range=1.0, reduction="none"
        ).mean()
    # oneDNN's convolution of one-channel 28 x 28 images with the 11 x 11 window is several times
    # slower than torch's own on a CPU, most of the test loop (docs/explanation/performance.md); the
    # two are equal within a float's rounding.
    enabled = torch.backends.mkldnn.enabled
    torch.backends.mkldnn.enabled = False
    try:
        return structural_similarity_index_measure(
            images, target, data_range=1.0, reduction="none"
        ).mean()
    finally:
        torch.backends.mkldnn.enabled = enabled


class AutoencoderModule(pl.LightningModule):
    """Base of all models: `encode`/`decode`/`loss`/`reconstruct`, plus training bookkeeping.

    Shapes and units throughout: images x are B x C x H x W (`image_shape`; MNIST 1 x 28 x 28)
    with pixels in [0, 1]; codes z are B x latent_dim; the decoder outputs pixel logits of the
    image's shape; loss figures are nats per image (summed over pixels), averaged over the batch.

    Args:
        latent_dim: the width of the code.
        recon_loss: the reconstruction term, one of `aelab.losses.RECON_LOSSES` ("bce":
            Bernoulli, "mse": Gaussian).
        net, noise, optimizer: the `net`, `noise` and `optimizer` config groups, as mappings
            with a `_target_` (None: the MLP, no noise, Adam with lr 1e-3). Net and noise are
            built here, the optimizer by `configure_optimizers`.
        kl_schedule: the `kl_schedule` group (None: a constant beta): how the KL term's weight
            or capacity moves with the step (`aelab.schedules`); a model without a KL term
            takes only the constant one (`kl_schedules` lists what a model takes).
        lr_scheduler: the `lr_scheduler` group (None or without `scheduler`: a constant lr):
            a torch scheduler config under `scheduler`, and Lightning's `interval`,
            `frequency`, `monitor`.
        image_shape: C, H, W.
        extra: a subclass's own hyperparameters handed on. What the checkpoint stores is
            every constructor's arguments up the class tree (`constructor_arguments`), those a
            subclass keeps to itself too.

    Raises:
        ConfigError: a value out of its range, naming its field (`latent_dim`, which aelab-train
            reports as `model.latent_dim`) or its group's (`net.channels`, `noise.std`,
            `optimizer.lr`).
    """

    # the kinds of `kl_schedule` the model's loss has a place for (`KLSchedule.kind`), and
    # whether it takes free bits: none beside the constant weight for a model without a KL term
    kl_schedules: tuple[str, ...] = ("constant",)
    takes_free_bits = False
    # a base class's constructor keys the model's loss does not use: refused like a typo
    # (`aelab.checks.accepted_keys`)
    keys_not_taken: tuple[str, ...] = ()

    # None: a stack (`aelab.stacked`) may train the model, its `loss` run under vmap over the
    # members' encoder and decoder weights; a model says so only where its loss reads nothing
    # else per member and takes every random number from `draws()` (the stack draws them per
    # member). A string: the one line saying why a job of this model runs alone.
    why_not_stackable: ClassVar[str | None] = (
        "a model of one's own stacks once its class sets why_not_stackable = None, which it may "
        "where its loss reads only its encoder's and decoder's weights and takes its random "
        "numbers from draws() (docs/how-to/own-model.md)"
    )

    code_factor = (
        1  # encoder outputs code_factor * latent_dim numbers (the VAE needs mu and logvar)
    )

    def __init__(
        self,
        latent_dim: int = 12,
        recon_loss: str = "mse",
        net: Mapping[str, Any] | None = None,
        noise: Mapping[str, Any] | None = None,
        optimizer: Mapping[str, Any] | None = None,
        image_shape: Sequence[int] = (1, 28, 28),
        kl_schedule: Mapping[str, Any] | None = None,
        lr_scheduler: Mapping[str, Any] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__()
        net, noise = plain(net, DEFAULT_NET), plain(noise, DEFAULT_NOISE)
        optimizer = plain(optimizer, DEFAULT_OPTIMIZER)
        kl_schedule = plain(kl_schedule, DEFAULT_KL_SCHEDULE)
        lr_scheduler = plain(lr_scheduler, {})
        self.latent_dim = check_int("latent_dim", latent_dim, 1)
        self.recon_loss = check_choice("recon_loss", recon_loss, RECON_LOSSES)
        lr = optimizer.get("lr")
        if lr is not None:
            with in_group("optimizer"):
                check_float("lr", lr, 0.0, low_open=True)
        self.image_shape = tuple(check_int("image_shape", s, 1) for s in image_shape)
        # every constructor's arguments up the class tree, as Lightning's save_hyperparameters()
        # collects them: a subclass's hyperparameter is saved even when it is kept on `self`
        # and never handed to this constructor, so the checkpoint rebuilds the model it trained
        hparams = constructor_arguments(inspect.currentframe())
        groups = dict(net=DEFAULT_NET, noise=DEFAULT_NOISE, optimizer=DEFAULT_OPTIMIZER)
        groups.update(kl_schedule=DEFAULT_KL_SCHEDULE, lr_scheduler={})
        hparams.update({k: plain(hparams.get(k), default) for k, default in groups.items()})
        hparams["image_shape"] = list(hparams["image_shape"])
        self.save_hyperparameters(hparams, logger=False)
        self.kl_schedule: KLSchedule = build_group(kl_schedule, "kl_schedule")
        # the step the weights were last trained at: the schedule's t also when evaluated
        # outside training (aelab-eval, a stacked member's validation), kept in checkpoints
        self.schedule_step = 0
        self.steps_per_epoch: float | None = None  # for `unit: epochs`, set at fit start
        self._check_kl_schedule()
        check_lr_scheduler(lr_scheduler, optimizer)
        # built here only (aelab-train hands the groups in): a bad value is the user's `net.*` or
        # `noise.*`, not `model.*`
        nets = build_group(net, "net")
        check_fits_in_memory(nets, self.image_shape, self.code_factor, self.latent_dim, net)
        with in_group("net"):  # a net that does not fit the image shape
            self.encoder = nets.encoder(self.image_shape, self.code_factor * self.latent_dim)
            self.decoder = nets.decoder(self.latent_dim, self.image_shape)
        self.noise: Noise = build_group(noise, "noise")
        self.train_means, self.val_means, self.test_means = (RunningMeans() for _ in range(3))
        # the training sums of an epoch a checkpoint was saved in, until training starts again
        self._resumed_train_means: dict[str, Any] | None = None
        # the `val/*` figures of the last validation, as the checkpoint loaded last held them
        self.last_validation: dict[str, float] = {}

    # --- the interface every model offers ---------------------------------------------------
    def encode(self, x: Tensor) -> Tensor:
        """The latent code used as the representation (for the VAE: the posterior mean).

        x: B x C x H x W in [0, 1] -> B x latent_dim.
        """
        return self.encoder(x)

    def decode(self, z: Tensor) -> Tensor:
        """Pixel logits: z of B x latent_dim -> B x C x H x W (their sigmoid is the image)."""
        return self.decoder(z)

    def reconstruct(self, x: Tensor) -> Tensor:
        """Deterministic reconstruction: x of B x C x H x W in [0, 1] -> intensities in [0, 1],
        same shape."""
        return self.decode(self.encode(x)).sigmoid()

    @override
    def forward(self, x: Tensor) -> Tensor:
        """`reconstruct`: B x C x H x W in [0, 1] -> the same shape, in [0, 1]."""
        return self.reconstruct(x)

    def loss(
        self,
        x_in: Tensor,
        target: Tensor,
        generator: torch.Generator | None = None,
        draws: Mapping[str, Tensor] | None = None,
        schedule: Mapping[str, Tensor | float] | None = None,
    ) -> tuple[dict[str, Tensor], Tensor]:
        """The objective on one batch, and what it is made of.

        Args:
            x_in: the encoder's input, B x C x H x W in [0, 1] (corrupted, for a noise run).
            target: the images to reconstruct, the same shape (clean).
            generator: the source of the model's own draws (the VAE's z); None: torch's global
                generator.
            draws: the random numbers to use instead of drawing them, as `draws(x_in)` gives
                them (then nothing is drawn and `generator` is unused).
            schedule: the KL schedule's values to use instead of this model's own at its
                `schedule_step` (`schedule_values`), floats or 0-d tensors.

        A stack (`aelab.stacked`) computes its members' losses as one: this method under
        `torch.func.vmap` over the members' parameters, each member's draws and schedule
        values handed in; so a loss reads nothing that differs between members but through
        these arguments (its weights are the module's parameters).

        Returns:
            The parts, each a scalar in nats per image averaged over the batch: `loss` (the one
            minimised) and `recon` (-log p(target | z)); the VAE adds `kl` and `neg_elbo`. And
            the reconstruction logits, B x C x H x W.
        """
        raise NotImplementedError

    def draws(
        self,
        x_in: Tensor,
        generator: torch.Generator | None = None,
        dtype: torch.dtype | None = None,
    ) -> dict[str, Tensor]:
        """The random numbers `loss` uses on x_in (B x C x H x W), drawn from `generator` (None:
        torch's global one) in the order and shapes `loss` draws them when it is not handed
        them; none here. `dtype`: theirs (None: x_in's).
        """
        return {}

    # --- the KL schedule ------------------------------------------------------------------------
    def _check_kl_schedule(self) -> None:
        schedule, name = self.kl_schedule, type(self).__name__
        if schedule.kind not in self.kl_schedules:
            allowed = " | ".join(self.kl_schedules)
            raise ConfigError("kl_schedule", schedule.kind, f"{allowed} for {name}", grouped=True)
        if schedule.free_bits and not self.takes_free_bits:
            raise ConfigError(
                "kl_schedule.free_bits", schedule.free_bits, f"0 for {name}", grouped=True
            )

    def schedule_position(self) -> float:
        """t of the KL schedule now: the step of the last training step (`schedule_step`), or
        epochs (fractional) for `unit: epochs`."""
        return position(self.schedule_step, self.kl_schedule.unit, self.steps_per_epoch)

    def schedule_values(self) -> dict[str, float]:
        """The KL schedule's values at the current step for the model's `beta` (1 without one):
        the weight β(t) (`weight`), and the capacity C(t) or free bits where the schedule has
        them (`KLSchedule.values`)."""
        return self.kl_schedule.values(float(getattr(self, "beta", 1.0)), self.schedule_position())

    def kl_penalty(
        self,
        kl: Tensor,
        kl_units: Tensor | None,
        schedule: Mapping[str, Tensor | float] | None = None,
    ) -> Tensor:
        """The KL part of the loss under `kl_schedule` at the current step (beta * kl for the
        constant schedule without free bits); kl: batch mean, nats per image; kl_units: B x
        latent_dim, per unit (read with free bits only); schedule: the values to use instead
        of `schedule_values()` (`loss`'s argument)."""
        values = dict(schedule) if schedule is not None else self.schedule_values()
        return self.kl_schedule.penalty_at(kl, kl_units, values)

    def _log_schedule(self, beta: float) -> None:
        schedule = self.kl_schedule
        if not schedule.varies:
            return
        t = self.schedule_position()
        self.log("train/beta", schedule.beta(beta, t), on_step=True, on_epoch=False)
        capacity = schedule.capacity(t)
        if capacity is not None:
            self.log("train/capacity", capacity, on_step=True, on_epoch=False)

    def _bind_schedule(self) -> None:
        """At train start (not fit start: asking Lightning for the run's length sets up the
        training data, before a resumed run has restored its loader's position): the steps per
        epoch, and the run's length for a schedule that spans it (cyclical, total null)."""
        trainer = self._trainer
        if trainer is None:  # hooks called by hand, outside a Trainer
            return
        self.steps_per_epoch = trainer.num_training_batches
        if self.kl_schedule.needs_run_length:
            steps = trainer.estimated_stepping_batches
            unit_steps = 1 if self.kl_schedule.unit == "steps" else max(self.steps_per_epoch, 1)
            self.kl_schedule.bind(float(steps) / unit_steps)

    def use_data(self, datamodule: Any, stage: str) -> None:
        """What the model takes from the data it is trained or evaluated on, before the loop
        starts (the β-TCVAE: the training split's size); nothing here. Lightning's `setup`
        calls it with the trainer's datamodule, a stack (`aelab.stacked`) with its own."""

    # --- Lightning hooks ------------------------------------------------------------------------
    @override
    def setup(self, stage: str) -> None:
        trainer = self._trainer
        self.use_data(getattr(trainer, "datamodule", None), stage)

    @override
    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        x, _ = batch
        self.schedule_step = self.global_step
        parts, _ = self.loss(self.noise(x), x)
        self.train_means.update(parts, weight=x.shape[0])
        if self.kl_schedule.varies:
            self._log_schedule(getattr(self, "beta", 1.0))
        return parts["loss"]

    @override
    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self.evaluate_batch(batch, batch_idx, "val")

    @override
    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self.evaluate_batch(batch, batch_idx, "test")

    def evaluate_batch(self, batch: tuple[Tensor, Tensor], batch_idx: int, stage: str) -> None:
        """One batch of the validation or test loop (`stage`: "val" or "test"): its figures
        added to `running_means(stage)`, which the loop's end logs as `<stage>/<name>`.

        batch: images B x C x H x W in [0, 1] and their labels; batch_idx: its place in the
        loop, which seeds the evaluation's draws (the same in every run and re-evaluation).
        """
        x, _ = batch
        generator = torch.Generator(device=x.device).manual_seed(EVAL_NOISE_SEED + batch_idx)
        x_in = self.noise(x, generator)
        parts, logits = self.loss(x_in, x, generator)
        logits = self.eval_logits(x_in, logits)
        recon = logits.sigmoid()
        values = dict(parts)
        values["recon_mse"] = (recon - x).square().flatten(1).mean(1).mean()
        values["recon_bce"] = bernoulli_nll(logits, x).mean()
        # one name per figure in every run: psnr/ssim are the output against the clean image,
        # noise runs add the corrupted input's own figures beside them
        psnr = peak_signal_noise_ratio(recon, x, data_range=1.0, reduction="none", dim=(1, 2, 3))
        values["psnr"] = psnr.mean()
        if not self.noise.is_identity:
            noisy = peak_signal_noise_ratio(
                x_in, x, data_range=1.0, reduction="none", dim=(1, 2, 3)
            )
            values["psnr_noisy_input"] = noisy.mean()
            values["psnr_gain_db"] = (psnr - noisy).mean()
        if stage == "test":  # SSIM's Gaussian windows cost more than the rest of a val epoch
            values["ssim"] = ssim(recon, x)
            if not self.noise.is_identity:
                values["ssim_noisy_input"] = ssim(x_in, x)
            values.update(self.test_parts(x_in))
        self.running_means(stage).update(values, weight=x.shape[0])

    def test_parts(self, x_in: Tensor) -> dict[str, Tensor]:
        """Batch means scored beside the loss in the test loop, on its very inputs (so a part
        and the whole it splits cover the same images, whatever `limit_test_batches`).

        x_in: the test loop's inputs, B x C x H x W in [0, 1] (corrupted, for a noise run).
        Returns scalars, each a mean over the batch's images, logged as `test/<name>`; none here.
        """
        return {}

    def eval_logits(self, x_in: Tensor, loss_logits: Tensor) -> Tensor:
        """The reconstruction scored at evaluation (`recon_mse`, `psnr`, ...), as logits.

        x_in: the evaluated inputs, B x C x H x W in [0, 1]; loss_logits: what `loss` decoded
        from them, the same shape, returned as they are here (the VAE decodes its posterior
        mean instead).
        """
        return loss_logits

    @override
    def on_train_epoch_end(self) -> None:
        self._log_means("train")

    @override
    def on_validation_epoch_end(self) -> None:
        self._log_means("val")

    @override
    def on_test_epoch_end(self) -> None:
        self._log_means("test")

    def running_means(self, stage: str) -> RunningMeans:
        """The figures of `stage` ("train", "val", "test") summed so far in its epoch; its
        `compute_and_reset()` gives their means."""
        return getattr(self, f"{stage}_means")

    def _log_means(self, stage: str) -> None:
        values = self.running_means(stage).compute_and_reset()
        # RunningMeans already summed them over all processes, so every process holds the same
        # figures. Lightning wants epoch-level values synced under DDP (else it warns for each);
        # the max over processes of equal values is that value exactly (a mean is not, for 3
        # processes), at the cost of one small collective per figure per epoch.
        self.log_dict(
            {f"{stage}/{k}": v for k, v in values.items()}, sync_dist=True, reduce_fx="max"
        )
        if stage == "val":
            self._check_monitor({f"val/{k}" for k in values})

    def _check_monitor(self, logged: set[str]) -> None:
        """A plateau schedule's `monitor` must be among the figures a validation logs (checked
        at the first, the sanity check's when there is one): else Lightning fails at the end of
        the first epoch with a traceback."""
        config = self.hparams.get("lr_scheduler") or {}
        monitor = config.get("monitor")
        if not is_plateau(config) or monitor in logged:
            return
        known = set(logged) | set(self.trainer.callback_metrics)
        if monitor not in known:
            names = ", ".join(sorted(k for k in known if k.startswith("val/")))
            raise ConfigError("lr_scheduler.monitor", monitor, f"one of {names}", grouped=True)

    @override
    def configure_optimizers(self) -> Any:
        """The `optimizer` group's optimizer over the parameters; with an `lr_scheduler`,
        Lightning's dict of both (the scheduler's `interval`, `frequency`, `monitor`)."""
        if not torch.cuda.is_available():
            # Lightning sets this at import to keep fork safe on GPU hosts; without a GPU it only
            # makes every optimizer.step() retry loading NVML (its cost: docs, Performance).
            os.environ.pop("PYTORCH_NVML_BASED_CUDA_CHECK", None)
        # partial: param groups handed to `instantiate` would be turned into configs
        optimizer = instantiate(self.hparams["optimizer"], _partial_=True)(self.optimizer_params())
        config = self.hparams.get("lr_scheduler") or {}
        if not config.get("scheduler"):
            return optimizer
        check_plateau_can_be_fed(config, self.trainer)
        scheduler = instantiate(
            config["scheduler"], optimizer=optimizer, **total_steps(config, self.trainer)
        )
        settings = {k: config[k] for k in ("interval", "frequency", "monitor") if config.get(k)}
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, **settings}}

    def optimizer_params(self) -> Any:
        """What the `optimizer` group's optimizer is built over: all parameters here; a model
        whose parts take their own settings (FactorVAE's discriminator) gives param groups."""
        return self.parameters()

    @override
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        stored = checkpoint.get(CHECKPOINT_KEY) or {}
        checkpoint[CHECKPOINT_KEY] = {
            "version": aelab.__version__,
            "model_class": f"{type(self).__module__}.{type(self).__qualname__}",
            # the composed run config: aelab.callbacks.RunConfigInCheckpoints writes it
            "config": stored.get("config"),
            # a run resumed after its last validation validates no more, yet reports these
            "validation": self._validation_figures(),
            "schedule_step": self.schedule_step,
            "steps_per_epoch": self.steps_per_epoch,
        }
        # a run resumed mid-epoch logs the same `train/*` epoch means as one that never stopped
        sums = {k: v.cpu() for k, v in self.train_means.sums.items()}
        checkpoint[TRAIN_MEANS_KEY] = {"sums": sums, "weights": dict(self.train_means.weights)}

    @override
    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        stored = checkpoint.get(CHECKPOINT_KEY) or {}
        self.last_validation = dict(stored.get("validation") or {})
        self.schedule_step = int(stored.get("schedule_step") or 0)
        self.steps_per_epoch = stored.get("steps_per_epoch")
        self._resumed_train_means = checkpoint.get(TRAIN_MEANS_KEY)

    @override
    def on_train_start(self) -> None:
        self._bind_schedule()
        # here, not on loading: the model is on its device only now
        resumed, self._resumed_train_means = self._resumed_train_means, None
        if resumed is not None:
            self.train_means.sums = {k: v.to(self.device) for k, v in resumed["sums"].items()}
            self.train_means.weights = dict(resumed["weights"])

    def _validation_figures(self) -> dict[str, float]:
        trainer = self._trainer  # None: saved by hand, outside a Trainer
        if trainer is None:
            return {}
        metrics = trainer.callback_metrics
        return {k: float(v) for k, v in metrics.items() if k.startswith("val/")}
