"""BSuite: the environments (env), the behaviour DQN that records the datasets (behaviour), the datasets' names,
generation and reading (datasets), and the TFDS/RLDS files they are stored in (tfds_files).
See docs/architecture.md."""
