"""MNIST: `source` prepares the files offline-first (no Lightning import, so the data CLI starts
fast); `mnist` serves them from memory as a LightningDataModule."""
