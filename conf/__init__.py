"""aelab's Hydra configs, installed as the package `aelab.conf` (`pkg://aelab.conf`; see setup.py).

Hydra reads a config package only when it holds an __init__.py: this file is here for that.
"""
