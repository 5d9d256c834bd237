"""Data parallelism: updates on 4 (CPU) devices equal the same updates on 1 device.

The same windows are sampled either way; the 4-device update splits them over the devices and
all-reduces the gradients.

The check runs in a subprocess, because the device count is fixed when JAX starts:
XLA_FLAGS=--xla_force_host_platform_device_count=4 gives 4 CPU devices.
"""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CHECK = textwrap.dedent(
    """
    import sys
    sys.path[:0] = [{root!r}, {tests!r}]
    import jax, jax.numpy as jnp, numpy as np
    from jax.sharding import Mesh
    from test_replay import synthetic_episodes
    from common.replay import make_store
    from common.sharding import replicate
    import {module} as algo

    assert len(jax.devices()) == 4, jax.devices()
    store = make_store(synthetic_episodes([4, 7, 3, 9, 5, 6]))
    args = algo.apply_env_defaults(algo.Args(batch_size=8, warmup_steps=1, target_update_interval=2, **{extra}))
    network = {network}
    states, metrics = [], []
    for devices in (jax.devices()[:1], jax.devices()):
        mesh = Mesh(np.asarray(devices), ("data",))
        state = {init}
        optimizer = algo.make_optimizer(args, jax.tree.map(lambda x: x[0], {params}))
        chunk = {chunk}
        initial = jax.device_get(state.params)
        state, store_on_mesh = replicate((state, store), mesh)
        state, m = chunk(state, store_on_mesh)
        states.append(jax.device_get(state)); metrics.append(jax.device_get(m))
    # The loss and the gradient norm agree to float precision; the parameters after Adam's first step
    # (about lr * sign(g) per weight, which amplifies reassociation in near-zero gradients) closely.
    np.testing.assert_allclose(metrics[0]["loss"], metrics[1]["loss"], rtol=1e-5)
    np.testing.assert_allclose(metrics[0]["grad_norm"], metrics[1]["grad_norm"], rtol=1e-4)
    for one, four in zip(jax.tree.leaves(states[0]), jax.tree.leaves(states[1])):
        np.testing.assert_allclose(one, four, rtol=1e-3, atol=1e-5)
    moved = [not np.allclose(a, b) for a, b in zip(jax.tree.leaves(initial), jax.tree.leaves(states[1].params))]
    assert sum(moved) > len(moved) // 2, moved  # the updates moved the parameters (the first has the warm-up's learning rate 0)
    print("equal")
    """
)

SCRIPTS = {
    "rosmo": dict(
        # Eq. 11's step function 1[adv > 0] at the fresh network's adv = 0 (up to rounding) would
        # turn float reassociation into different gradients; the rest of the loss is smooth.
        extra="dict(behavior_coef=0.0)",
        network="algo.MuZeroNetwork(num_actions=3, num_bins=20, representation_layers=(16, 8), dynamics_layers=(8, 16, 8), prediction_layers=(8,))",
        init="algo.init_train_states(args, network, jnp.zeros((1, 3)), [0, 1])",
        params="state.params",
        chunk="algo.make_train_chunk(args, network, optimizer, 3, 3, mesh)",
    ),
    "crr": dict(
        extra="dict()",
        network="(algo.PolicyNetwork(3, representation_layers=(16, 8), prediction_layers=(8,)), algo.QNetwork(3, 20, representation_layers=(16, 8), dynamics_layers=(8, 16, 8), prediction_layers=(8,)))",
        init="algo.init_train_states(args, *network, jnp.zeros((1, 3)), [0, 1])",
        params="state.params",
        chunk="algo.make_train_chunk(args, *network, optimizer, 3, 3, mesh)",
    ),
}


def run_check(module: str) -> subprocess.CompletedProcess:
    code = CHECK.format(root=str(ROOT), tests=str(ROOT / "tests"), module=module, **SCRIPTS[module])
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=4", "JAX_PLATFORMS": "cpu"}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600, env=env, cwd=ROOT)


def test_rosmo_update_on_four_devices_equals_one_device():
    out = run_check("rosmo")
    assert out.returncode == 0 and "equal" in out.stdout, out.stderr[-3000:]


def test_crr_update_on_four_devices_equals_one_device():
    out = run_check("crr")
    assert out.returncode == 0 and "equal" in out.stdout, out.stderr[-3000:]
