"""Stacked sweeps: M same-shape jobs of a sweep trained together as one stacked model.

`core` trains the members (parameters stacked along a leading member dimension, `vmap` over the
ordinary nets); `grouping` decides which of a sweep's jobs may share a stack; the Hydra launcher
(`hydra/launcher=stacked`, in `hydra_plugins.aelab_stacked`) writes each member's run folder;
`checkpoint` keeps a training stack's state in the sweep folder, to continue it exactly.
"""

from aelab.stacked.core import StackedMember, train_stacked
from aelab.stacked.grouping import NotStackable, group_configs, why_not_stackable

__all__ = [
    "NotStackable",
    "StackedMember",
    "group_configs",
    "train_stacked",
    "why_not_stackable",
]
