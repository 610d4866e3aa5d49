"""Puts aelab_examples' configs on Hydra's search path (Hydra finds plugins only under the
`hydra_plugins` package), beside aelab's own: `aelab-train model=wae_mmd data=idx_folder`."""

from hydra.core.config_search_path import ConfigSearchPath
from hydra.plugins.search_path_plugin import SearchPathPlugin


class AelabExamplesSearchPath(SearchPathPlugin):
    def manipulate_search_path(self, search_path: ConfigSearchPath) -> None:
        search_path.append(provider="aelab-examples", path="pkg://aelab_examples.conf")
