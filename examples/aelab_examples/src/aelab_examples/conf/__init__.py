"""Config groups added to aelab's: model/wae_mmd.yaml, data/idx_folder.yaml (Hydra reads a config
package only when it holds an __init__.py)."""
