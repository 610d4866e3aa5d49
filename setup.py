"""The package list lives here because pyproject.toml cannot both find the packages under src/
and map one more from elsewhere: the Hydra configs stay in conf/ at the top of the repository
and ship in the wheel as the package `aelab.conf` (Hydra finds them as `pkg://aelab.conf`)."""

from setuptools import find_namespace_packages, setup

# conf/'s subfolders (conf/model, conf/hydra/launcher, ...) as aelab.conf's subpackages
CONF = ["aelab.conf", *(f"aelab.conf.{p}" for p in find_namespace_packages("conf"))]

setup(
    packages=[
        *find_namespace_packages("src", include=["aelab", "aelab.*", "hydra_plugins*"]),
        *CONF,
    ],
    package_dir={"": "src", "aelab.conf": "conf"},
    package_data={p: ["*.yaml"] for p in CONF},
)
