"""Post-hoc samplers: draw codes for a trained model and decode them (config group `sampler`)."""

from aelab.samplers.samplers import EmpiricalCodeSampler, GMMSampler, PriorSampler, Sampler

__all__ = ["EmpiricalCodeSampler", "GMMSampler", "PriorSampler", "Sampler"]
