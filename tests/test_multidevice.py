"""Data parallelism: updates on 4 (CPU) devices equal the same updates on 1 device.

The same windows are sampled either way; the 4-device update splits them over the devices and
all-reduces the gradients. The multi-host layout is checked too: a store of 2 process parts,
sharded over a [2 processes, 2 devices] mesh, gives the updates of the same store on 1 device
(each part's windows are sampled where the part lives).

The checks run in one subprocess, because the device count is fixed when JAX starts:
XLA_FLAGS=--xla_force_host_platform_device_count=4 gives 4 CPU devices.
"""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

CHECK = textwrap.dedent(
    """
    def check_{module}_{layout}():
        import {module} as algo

        episodes = synthetic_episodes([4, 7, 3, 9, 5, 6])
        parts = stack_shards([make_store(process_part(episodes, p, 2, "test")) for p in range(2)])
        layout = {layout!r}
        store = make_store(episodes) if layout == "replicated" else parts
        args = algo.apply_env_defaults(algo.Args(batch_size=8, warmup_steps=1, target_update_interval=2, **{extra}))
        network = {network}
        states, metrics = [], []
        for shape in ((1, 1), (1, 4) if layout == "replicated" else (2, 2)):
            mesh = Mesh(np.asarray(jax.devices()[: shape[0] * shape[1]]).reshape(shape), ("process", "data"))
            optimizer = optimizer_of(algo, args)
            state = {init}
            chunk = {chunk}
            initial = jax.device_get(state.params)
            state = replicate(state, mesh)
            spec = PartitionSpec("process") if shape[0] > 1 else PartitionSpec()
            state, m = chunk(state, jax.device_put(store, NamedSharding(mesh, spec)))
            states.append(jax.device_get(state)); metrics.append(jax.device_get(m))
        # The loss and the gradient norm agree to float precision; the parameters after Adam's first step
        # (about lr * sign(g) per weight, which amplifies reassociation in near-zero gradients) closely.
        np.testing.assert_allclose(metrics[0]["loss"], metrics[1]["loss"], rtol=1e-5)
        np.testing.assert_allclose(metrics[0]["grad_norm"], metrics[1]["grad_norm"], rtol=1e-4)
        for one, four in zip(jax.tree.leaves(states[0]), jax.tree.leaves(states[1])):
            np.testing.assert_allclose(one, four, rtol=1e-3, atol=1e-5)
        moved = [not np.allclose(a, b) for a, b in zip(jax.tree.leaves(initial), jax.tree.leaves(states[1].params))]
        # the updates moved the parameters (the first has the warm-up's learning rate 0)
        assert sum(moved) > len(moved) // 2, moved
    """
)
# A process runs the checks named on its command line, each reporting "<name>: equal" or its error.
PROGRAM = textwrap.dedent(
    """
    import sys, traceback
    sys.path[:0] = [{root!r}, {tests!r}]
    import jax, jax.numpy as jnp, numpy as np
    from jax.sharding import Mesh, NamedSharding, PartitionSpec
    from scripts import optimizer_of
    from test_replay import synthetic_episodes
    from common.episodes import process_part
    from common.replay import make_store, stack_shards
    from common.sharding import replicate

    assert len(jax.devices()) == 4, jax.devices()
    {checks}
    for name in sys.argv[1:]:
        try:
            globals()[name]()
            print(f"{{name}}: equal", flush=True)
        except Exception:
            print(f"{{name}}: failed", flush=True)
            traceback.print_exc()
    """
)

SCRIPTS = {
    "rosmo": dict(
        # Eq. 11's step function 1[adv > 0] at the fresh network's adv = 0 (up to rounding) would
        # turn float reassociation into different gradients; the rest of the loss is smooth. A 2-step
        # unroll and 2-step targets keep the compile short.
        extra="dict(behavior_coef=0.0, unroll_steps=2, td_steps=2)",
        network="algo.networks.MuZeroNetwork(num_actions=3, num_bins=20, representation_layers=(16, 8), "
        "dynamics_layers=(8, 16, 8), prediction_layers=(8,))",
        init="algo.init_train_states(network, optimizer, jnp.zeros((1, 3)), [0, 1])",
        chunk="algo.make_train_chunk(args, network, optimizer, 3, 3, mesh)",
    ),
    "crr": dict(
        extra="dict()",
        network="(algo.networks.PolicyNetwork(3, representation_layers=(16, 8), prediction_layers=(8,)), "
        "algo.networks.QNetwork(3, 20, representation_layers=(16, 8), dynamics_layers=(8, 16, 8), prediction_layers=(8,)))",
        init="algo.init_train_states(*network, optimizer, jnp.zeros((1, 3)), [0, 1])",
        chunk="algo.make_train_chunk(args, *network, optimizer, 3, 3, mesh)",
    ),
}


CHECKS = [("rosmo", "replicated"), ("crr", "replicated"), ("rosmo", "process_parts")]


@pytest.fixture(scope="module")
def checked() -> dict:
    """(exit code, stdout, stderr) of each script's checks, run in a process per script with 4 CPU devices,
    the processes side by side."""
    checks = "\n".join(CHECK.format(module=m, layout=layout, **SCRIPTS[m]) for m, layout in CHECKS)
    code = PROGRAM.format(root=str(ROOT), tests=str(ROOT / "tests"), checks=checks)
    xla_flags = f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count=4".strip()  # the last count wins
    env = {**os.environ, "XLA_FLAGS": xla_flags, "JAX_PLATFORMS": "cpu"}
    procs = {
        module: subprocess.Popen(
            [sys.executable, "-c", code, *[f"check_{m}_{layout}" for m, layout in CHECKS if m == module]],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            cwd=ROOT,
        )
        for module in SCRIPTS
    }
    outputs = {}
    for module, proc in procs.items():
        stdout, stderr = proc.communicate(timeout=600)
        outputs[module] = (proc.returncode, stdout, stderr)
    return outputs


def assert_equal(checked, module, layout):
    returncode, stdout, stderr = checked[module]
    assert returncode == 0 and f"check_{module}_{layout}: equal" in stdout.splitlines(), stdout + stderr[-3000:]


def test_rosmo_update_on_four_devices_equals_one_device(checked):
    assert_equal(checked, "rosmo", "replicated")


def test_crr_update_on_four_devices_equals_one_device(checked):
    assert_equal(checked, "crr", "replicated")


def test_rosmo_update_with_two_process_parts_on_a_two_by_two_mesh_equals_one_device(checked):
    assert_equal(checked, "rosmo", "process_parts")
