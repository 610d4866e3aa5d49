"""What several test modules share beyond conftest's fixtures: real tiny sweeps
(`helpers.sweeps`) and fresh virtualenvs holding aelab as a user installs it (`helpers.venvs`)."""
