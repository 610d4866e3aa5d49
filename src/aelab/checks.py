"""Early, one-line validation of config values, so bad input never reaches torch."""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import math
import re
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any


class DataSourceError(RuntimeError):
    """The data could not be made available (MNIST's files, a data folder); the message names
    the file or folder and why. Here, beside ConfigError, so that every layer can refuse with it
    (`aelab.data.source` raises it and re-exports it)."""


class ConfigError(ValueError):
    """A config value outside its allowed range. `str(err)` is the one line shown to the user."""

    def __init__(self, field: str, value: Any, allowed: str, *, grouped: bool = False) -> None:
        self.field, self.value, self.allowed = field, value, allowed
        self.grouped = grouped  # the field already names its group
        super().__init__(f"{field}={value!r} is invalid: allowed {allowed}")

    def under(self, prefix: str) -> ConfigError:
        """The same error with its config group in front of the field (`model.latent_dim`).

        Only the innermost group counts: a net built inside the model stays `net.channels`.
        """
        if self.grouped:
            return self
        return ConfigError(f"{prefix}.{self.field}", self.value, self.allowed, grouped=True)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def check_int(field: str, value: Any, low: int, high: int | None = None) -> int:
    """Require an integer in [low, high] (high=None: no upper bound); returns it.

    Raises:
        ConfigError: not an int (a bool or a float is not), or outside the range.
    """
    allowed = f"an integer >= {low}" if high is None else f"an integer in [{low}, {high}]"
    if not isinstance(value, int) or isinstance(value, bool):
        raise ConfigError(field, value, allowed)
    if value < low or (high is not None and value > high):
        raise ConfigError(field, value, allowed)
    return value


def check_float(
    field: str, value: Any, low: float, high: float | None = None, *, low_open: bool = False
) -> float:
    """Require a finite number in [low, high] ((low, high] when low_open); returns it as a float.

    Raises:
        ConfigError: not an int or float (a bool is not), not finite, or outside the range.
    """
    bracket = "(" if low_open else "["
    allowed = f"a number in {bracket}{low}, {'inf)' if high is None else f'{high}]'}"
    if not _is_number(value):
        raise ConfigError(field, value, allowed)
    too_low = value <= low if low_open else value < low
    if too_low or (high is not None and value > high):
        raise ConfigError(field, value, allowed)
    return float(value)


def check_test_batches(limit: Any) -> None:
    """`trainer.limit_test_batches` of a run that is tested: a batch count >= 1, a fraction in
    (0, 1] or null (all). Zero leaves no test figure to compute (Lightning skips the loop).

    Raises:
        ConfigError: any other value, named `trainer.limit_test_batches`.
    """
    fraction = isinstance(limit, float) and 0 < limit <= 1
    count = isinstance(limit, int) and not isinstance(limit, bool) and limit >= 1
    if limit is not None and not (fraction or count):
        allowed = "a number of batches >= 1, a fraction in (0.0, 1.0] or null (test=false: no test)"
        raise ConfigError("trainer.limit_test_batches", limit, allowed)


def check_choice(field: str, value: Any, choices: tuple[str, ...]) -> str:
    """Require one of `choices`; returns it.

    Raises:
        ConfigError: any other value.
    """
    if value not in choices:
        raise ConfigError(field, value, "one of " + ", ".join(choices))
    return value


def build(cfg: Any, group: str, **kwargs: Any) -> Any:
    """`hydra.utils.instantiate` of `cfg` (kwargs: its arguments beside the config's).

    Raises:
        ConfigError: naming `group.field`: a ConfigError of the built class (the innermost group
            kept), a refusal of the library whose message names a field of `cfg`, or else
            `group=<_target_>` when it cannot be built at all.
    """
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate

    check_keys(cfg, group)
    try:
        return instantiate(cfg, **kwargs)
    except InstantiationException as err:
        cause = err.__cause__
        if isinstance(cause, ConfigError):
            raise cause.under(group) from None
        target = cfg.get("_target_", cfg)
        if isinstance(cause, ImportError) and str(err).startswith("Error locating target"):
            raise import_refusal(group, target, cause) from err
        if cause is not None:  # the library's own refusal: name the field it names
            named = refusal(cause, cfg, group, f"what {target} accepts")
            if named is not None:
                raise named from err
        reason = " ".join(str(err).split())
        raise ConfigError(group, target, f"a buildable config ({reason})", grouped=True) from err


# classes whose `**kwargs` keeps a subclass's own hyperparameters, handed in by name, rather
# than taking any key: a key none of their subclasses names is a typo (hydra#1457)
CLOSED_KWARGS = frozenset({"aelab.models.base.AutoencoderModule"})


def accepted_keys(target: Any) -> set[str] | None:
    """The keyword arguments `target` (a class or a function) takes, following a constructor's
    `**kwargs` up the class's bases (a subclass hands them to `super().__init__`); None when
    any key may be taken (a `**kwargs` that reaches no signature, or none to read). A class's
    `keys_not_taken` (a base's keys it does not use) are left out."""
    import inspect

    named = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    if not isinstance(target, type):
        try:
            params = inspect.signature(target).parameters.values()
        except (TypeError, ValueError):
            return None
        if any(p.kind == inspect.Parameter.VAR_KEYWORD for p in params):
            return None
        return {p.name for p in params if p.kind in named}
    keys: set[str] = set()
    # a base class's keys a subclass does not use (the IWAE's bound has no KL weight): refused,
    # or `+model.beta=4` would be recorded as if it had trained
    dropped = frozenset(getattr(target, "keys_not_taken", ()))
    for klass in target.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        if klass is object:  # no constructor of its own anywhere: it takes no keyword
            return set() if _no_init(target) else None  # else: a **kwargs that reached object
        try:
            params = list(inspect.signature(init).parameters.values())[1:]  # self
        except (TypeError, ValueError):
            return None
        keys |= {p.name for p in params if p.kind in named}
        if f"{klass.__module__}.{klass.__qualname__}" in CLOSED_KWARGS:
            return keys - dropped
        if not any(p.kind == inspect.Parameter.VAR_KEYWORD for p in params):
            return keys - dropped
    return None


def _no_init(cls: type) -> bool:
    return all("__init__" not in vars(k) for k in cls.__mro__[:-1])


def check_keys(cfg: Any, group: str) -> None:
    """Every key of `cfg` (a `_target_` node) is an argument its target takes.

    Raises ConfigError naming `group.key` and the nearest key the target takes: a misspelt
    `+model.latnt_dim=8`, or `++model.beta=2` on a model without beta, would otherwise be
    dropped or stored without effect.
    """
    import difflib

    target = cfg.get("_target_") if hasattr(cfg, "get") else None
    if not isinstance(target, str):
        return
    try:
        found = locate(target)
    except ImportError:
        return  # instantiate says it, naming the import's own error
    accepted = accepted_keys(found)
    if accepted is None:
        return
    for key in cfg:
        key = str(key)
        if key.startswith("_") or key in accepted:
            continue
        nearest = difflib.get_close_matches(key, sorted(accepted), n=1, cutoff=0.6)
        takes = ", ".join(sorted(accepted)) or "none"
        hint = f"did you mean {nearest[0]}?" if nearest else f"it takes {takes}"
        value = cfg.get(key)
        raise ConfigError(
            f"{group}.{key}", value, f"a key that {target} takes ({hint})", grouped=True
        )


# every key that seeds a random generator, and the range `pl.seed_everything` and numpy take
SEED_KEYS = ("seed", "data.seed", "data.split_seed", "eval.seed")
MAX_SEED = 2**32 - 1


def check_seeds(cfg: Any) -> None:
    """Each seed-like key of `cfg` (`SEED_KEYS`, where set) is an integer in [0, 2^32 - 1].

    Raises ConfigError naming the key (`seed=abc`, `seed=-1`, `seed=99999999999`), before
    anything is built or written.
    """
    from omegaconf import OmegaConf

    for key in SEED_KEYS:
        value = OmegaConf.select(cfg, key, default=None)
        if value is not None:
            check_int(key, value, 0, MAX_SEED)


# precisions Lightning accepts that cast the model but not the data (float32 images)
OTHER_DTYPE_PRECISIONS = (
    64,
    "64",
    "64-true",
    "16-true",
    "bf16-true",
    "transformer-engine",
    "transformer-engine-float16",
)


def check_precision(value: Any) -> None:
    """`trainer.precision` is float32 or a mixed precision (autocast over float32 data): a
    `-true` precision would run the model in another dtype than the images aelab serves (values
    Lightning does not know at all are left to its own message).

    Raises ConfigError (`trainer.precision`) for `bf16-true`, `16-true`, `64-true` and the rest.
    """
    if value in OTHER_DTYPE_PRECISIONS:
        allowed = (
            "32-true, 16-mixed or bf16-mixed (the images are float32: a model in another dtype "
            "fails at its first batch)"
        )
        raise ConfigError("trainer.precision", value, allowed, grouped=True)


def import_refusal(group: str, target: Any, err: ImportError) -> ConfigError:
    """A `_target_` that cannot be imported, naming it and the import's own error (Hydra wraps
    that error: `No module named 'my_models'`, a missing class, a syntax error in the module)."""
    inner = err.__cause__ or err
    reason = " ".join(f"{type(inner).__name__}: {inner}".split())
    module, _, name = str(target).rpartition(".")
    if module and isinstance(inner, ModuleNotFoundError):  # Hydra tried `module.name` as a module
        try:
            found = importlib.import_module(module)
        except Exception:  # noqa: BLE001 - the module itself fails: Hydra's reason stands
            found = None
        if found is not None and not hasattr(found, name):
            reason = f"AttributeError: module {module!r} has no attribute {name!r}"
    return ConfigError(
        f"{group}._target_", target, f"an importable class or function ({reason})", grouped=True
    )


def locate(target: str) -> Any:
    """The object a dotted `_target_` names, found as Hydra's `instantiate` finds it, without
    the error `hydra.utils.get_object` logs first (the caller says it in one line).

    Raises ImportError (its cause: the import's own error) when it cannot be found.
    """
    from hydra._internal.utils import _locate  # what instantiate uses; hydra-core is pinned <1.4

    return _locate(target)


def _search_path_entries(argv: Sequence[str]) -> Iterator[tuple[str, str]]:
    """The config folders a command line adds: (`--config-dir`, DIR) and (`hydra.searchpath`,
    entry) pairs."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    args = iter(argv)
    for arg in args:
        if arg in ("--config-dir", "-cd"):
            value = next(args, None)
            if value is not None:  # argparse says what is missing
                yield "--config-dir", value
        elif arg.startswith("--config-dir="):
            yield "--config-dir", arg.split("=", 1)[1]
        elif arg.lstrip("+").startswith("hydra.searchpath="):
            try:
                (override,) = OverridesParser.create().parse_overrides([arg])
            except Exception:  # noqa: BLE001 - Hydra's parser reports a malformed override
                continue
            value = override.value()
            for entry in value if isinstance(value, list) else [value]:
                yield "hydra.searchpath", str(entry)


def check_search_path(argv: Sequence[str]) -> None:
    """Config folders given on the command line must exist: Hydra refuses a missing
    `--config-dir` with a traceback hint and silently skips a missing `hydra.searchpath` entry.

    `file://DIR` and plain entries are folders (relative to the current one); `pkg://NAME` an
    importable package. Raises ConfigError naming the option and the entry.
    """
    for option, entry in _search_path_entries(argv):
        if entry.startswith("pkg://"):
            name = entry[len("pkg://") :].replace("/", ".")
            try:
                found = importlib.util.find_spec(name) is not None
            except (ImportError, ValueError):
                found = False
            if not found:
                raise ConfigError(option, entry, f"an importable config package (no {name})")
            continue
        folder = Path(entry.removeprefix("file://")).expanduser()
        if not folder.is_dir():
            why = "not a folder" if folder.exists() else "it does not exist"
            raise ConfigError(option, entry, f"a folder of configs ({folder}: {why})")


def refusal(
    err: BaseException, cfg: Any, group: str, allowed: str, *, quoted_only: bool = False
) -> ConfigError | None:
    """A library's refusal of a config value as a ConfigError naming `group.field`, or None when
    its message names none of `cfg`'s fields.

    Libraries name the field (`val_check_interval`, `Trainer(devices=0)`, "Precision 'x'") or
    quote its value (`Timer(duration='1 day')`, for `max_time`). `quoted_only`: only a field in
    backticks counts (an error that may come from elsewhere than the config).
    """
    message = " ".join(str(err).split())
    fields = {k: v for k, v in cfg.items() if isinstance(k, str) and not k.startswith("_")}

    def first(pattern: Callable[[str, Any], str], flags: int = 0) -> str | None:
        # the field named first is the one refused (later ones are suggestions)
        at = {
            k: m.start()
            for k, v in fields.items()
            if (m := re.search(pattern(k, v), message, flags))
        }
        return min(at, key=at.__getitem__) if at else None

    field = first(lambda k, v: rf"`(?:\w+\()?{re.escape(k)}\b[^`]*`")
    if field is None and not quoted_only:
        field = first(lambda k, v: rf"(?<![\w.]){re.escape(k)}(?!\w)", re.IGNORECASE)
        if field is None:  # by its quoted value (`Timer(duration='bogus')` for max_time)
            field = first(
                lambda k, v: (
                    rf"['`\"]{re.escape(v)}['`\"]" if isinstance(v, str) and len(v) > 2 else r"(?!)"
                )
            )
    if field is None:
        return None
    return ConfigError(f"{group}.{field}", fields[field], f"{allowed} ({message})", grouped=True)


@contextlib.contextmanager
def in_group(group: str) -> Iterator[None]:
    """Checks made outside a group's own constructor still name `group.field`.

    Raises:
        ConfigError: one raised in the block, re-raised as `group.field` (unless it already
            names its group).
    """
    try:
        yield
    except ConfigError as err:
        raise err.under(group) from None
