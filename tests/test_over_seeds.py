"""common.sharding.over_seeds: Atari's seeds run one after another on a CPU, everything else vmapped, and both
give every seed the update it would get alone."""

import jax
import jax.numpy as jnp
import numpy as np

from common import sharding


def conv_chunk(state, store):
    """A stand-in for a script's chunk: a convolution of the shared store by the seed's kernel, and a metric."""
    out = jax.lax.conv_general_dilated(store, state["kernel"], (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))
    return {"kernel": state["kernel"] - 0.1 * jnp.mean(out)}, {"loss": jnp.sum(out**2)}


def test_looped_and_vmapped_seeds_give_each_seed_its_own_update():
    keys = jax.random.split(jax.random.PRNGKey(0), 3)
    state = {"kernel": jax.vmap(lambda k: jax.random.normal(k, (3, 3, 2, 4)))(keys)}  # 3 seeds
    store = jax.random.normal(jax.random.PRNGKey(1), (5, 8, 8, 2))
    looped = jax.jit(sharding.over_seeds(conv_chunk, atari=True))(state, store)
    vmapped = jax.jit(sharding.over_seeds(conv_chunk, atari=False))(state, store)
    alone = [conv_chunk({"kernel": state["kernel"][i]}, store) for i in range(3)]
    for i, (one_state, one_metrics) in enumerate(alone):
        for result in (looped, vmapped):
            np.testing.assert_allclose(result[0]["kernel"][i], one_state["kernel"], rtol=1e-5, atol=1e-6)
            np.testing.assert_allclose(result[1]["loss"][i], one_metrics["loss"], rtol=1e-5)


def test_atari_on_a_cpu_loops_over_the_seeds_and_bsuite_is_vmapped():
    assert jax.default_backend() == "cpu"
    state = {"kernel": jnp.zeros((2, 3, 3, 2, 4))}
    store = jnp.zeros((5, 8, 8, 2))
    looped = str(jax.make_jaxpr(sharding.over_seeds(conv_chunk, atari=True))(state, store))
    vmapped = str(jax.make_jaxpr(sharding.over_seeds(conv_chunk, atari=False))(state, store))
    assert "scan" in looped and "scan" not in vmapped  # lax.map is a scan over the seed axis
