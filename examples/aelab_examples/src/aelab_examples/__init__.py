"""aelab extended from outside: `wae.WAE` (model=wae_mmd) and `idx_folder.IDXFolderDataModule`
(data=idx_folder); their configs are in `aelab_examples.conf`, on Hydra's search path once the
package is installed (hydra_plugins/aelab_examples_searchpath)."""
