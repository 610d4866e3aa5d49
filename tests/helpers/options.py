"""Config options built for other images than MNIST's 28 x 28, and the data they fit: the tests
that compose every option of a group with the default data compose these with their data."""

COMPANIONS = {
    "net=conv64": ["data=shapes"],
    "net=conv_celeba": ["data=cifar10"],
    "data=image_folder": ["data.path=."],
}


def with_companions(override: str) -> list[str]:
    """`override` and the overrides it needs to build (none for most options)."""
    return [override, *COMPANIONS.get(override, [])]
