"""Reference returns for normalised scores: (R - random) / (online - random).

BSuite: paper Table 6 (random agent and the online DQN agent that produced the data).
Atari: random agent and the online DQN of RL Unplugged (whose replay is the data), raw game
scores, for the paper's 12 games only; the other 34 games of RL Unplugged have no entry yet, and
`reference_scores` / `normalized_score` raise a KeyError naming the games that have one.
A normalised score of 1 is on par with the data-collecting online agent.
"""

BSUITE_SCORES = {  # env_id: (random return, online DQN return)
    "catch": (-0.667, 1.0),
    "cartpole": (64.83, 1001.0),
    "mountain_car": (-1000.0, -102.16),
}

ATARI_SCORES = {  # RL Unplugged game name: (random return, online DQN return)
    "Amidar": (3.19, 1556.96),
    "Asterix": (279.06, 4131.77),
    "Breakout": (1.33, 157.86),
    "Frostbite": (71.99, 1643.65),
    "Gravitar": (213.71, 310.56),
    "Jamesbond": (27.63, 777.73),
    "MsPacman": (247.97, 4171.53),
    "Phoenix": (873.03, 5122.30),
    "Pong": (-20.30, 18.25),
    "Qbert": (155.01, 12275.13),
    "Riverraid": (1504.25, 12798.88),
    "Seaquest": (81.78, 3233.47),
}


def has_reference_scores(env_id: str) -> bool:
    return env_id in BSUITE_SCORES or env_id in ATARI_SCORES


def reference_scores(env_id: str) -> tuple:
    """(random return, online DQN return) of a BSuite env id or an Atari game name."""
    if env_id in BSUITE_SCORES:
        return BSUITE_SCORES[env_id]
    if env_id in ATARI_SCORES:
        return ATARI_SCORES[env_id]
    raise KeyError(
        f"no reference scores for '{env_id}'; BSuite: {', '.join(sorted(BSUITE_SCORES))}; "
        f"Atari (the paper's 12 games only): {', '.join(sorted(ATARI_SCORES))}"
    )


def normalized_score(env_id: str, episode_return: float) -> float:
    random_return, online_return = reference_scores(env_id)
    return (episode_return - random_return) / (online_return - random_return)
