"""Milliseconds per training step: a plain loop, a bare Lightning Trainer, and aelab's Trainer
(`aelab.bench.steps`, where the loops live and say what each measures).

    python scripts/step_overhead.py                  # the reference VAE, torch's default threads
    python scripts/step_overhead.py --model ae --threads 1 --rounds 5
"""

from aelab.bench.steps import main

if __name__ == "__main__":
    main()
