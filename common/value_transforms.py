"""Scalar <-> categorical value representation (paper Appendix A.2, MuZero Appendix F).

Rewards and values are squashed by h(x) = sign(x)(sqrt(|x| + 1) - 1) + eps * x (Pohlen et al.,
2018), then spread over a uniform support of `num_bins` points spaced 1 apart and centred on 0
("two-hot": the mass is split between the two nearest bins). Decoding takes the expectation over
the bins and applies h^-1. With 601 bins the support is -300..300 (Atari); with 20 bins it is
-9.5..9.5 (BSuite), enough for |h(x)| up to 9.5, i.e. |x| up to about 100.

No networks, no losses: just these pure array functions.
"""

import jax
import jax.numpy as jnp

EPSILON = 1e-3


def h(x: jax.Array, eps: float = EPSILON) -> jax.Array:
    """The invertible value transform h of Pohlen et al. (2018)."""
    return jnp.sign(x) * (jnp.sqrt(jnp.abs(x) + 1.0) - 1.0) + eps * x


def h_inv(y: jax.Array, eps: float = EPSILON) -> jax.Array:
    """Closed-form inverse of `h`."""
    return jnp.sign(y) * (jnp.square((jnp.sqrt(1.0 + 4.0 * eps * (jnp.abs(y) + 1.0 + eps)) - 1.0) / (2.0 * eps)) - 1.0)


def support(num_bins: int) -> jax.Array:
    """Bin centres: num_bins points spaced 1 apart, symmetric around 0."""
    return jnp.arange(num_bins, dtype=jnp.float32) - (num_bins - 1) / 2.0


def two_hot(y: jax.Array, num_bins: int) -> jax.Array:
    """Encode already-transformed scalars y [...] as two-hot distributions [..., num_bins].

    y is clipped to the support; the two neighbouring bins get weights that make the
    expectation exactly y.
    """
    half = (num_bins - 1) / 2.0
    pos = jnp.clip(y, -half, half) + half  # in [0, num_bins - 1]
    low = jnp.floor(pos)
    p_high = pos - low
    low_idx = low.astype(jnp.int32)
    high_idx = jnp.minimum(low_idx + 1, num_bins - 1)
    return (
        jax.nn.one_hot(low_idx, num_bins) * (1.0 - p_high)[..., None] + jax.nn.one_hot(high_idx, num_bins) * p_high[..., None]
    )


def scalar_to_probs(x: jax.Array, num_bins: int) -> jax.Array:
    """Raw scalar (reward or return) -> two-hot target distribution over h-space bins."""
    return two_hot(h(x), num_bins)


def logits_to_transformed(logits: jax.Array) -> jax.Array:
    """Categorical logits [..., num_bins] -> the expected bin value, a scalar in h-space (before h^-1)."""
    num_bins = logits.shape[-1]
    return jnp.sum(jax.nn.softmax(logits, axis=-1) * support(num_bins), axis=-1)


def logits_to_scalar(logits: jax.Array) -> jax.Array:
    """Categorical logits [..., num_bins] -> raw scalar: h^-1 of the expected bin value."""
    return h_inv(logits_to_transformed(logits))
