"""Schedules: the KL term's weight and capacity over training (`kl_schedule` group), and
learning-rate schedules (`lr_scheduler` group)."""

from aelab.schedules.kl import Capacity, Cyclical, KLSchedule, Warmup, position
from aelab.schedules.lr import cosine_with_warmup

__all__ = ["Capacity", "Cyclical", "KLSchedule", "Warmup", "cosine_with_warmup", "position"]
