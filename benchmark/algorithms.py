"""The one way a benchmark reaches the code of an algorithm script: `script(name)`.

The benchmarks run the scripts as subprocesses (benchmark/runner.py) and, in a few places, import one to read
its flags or to build its update on this machine. Every such import goes through `script`, so tests/test_layout.py
can check that no file of benchmark/ imports a script any other way, and the names the benchmarks rely on are
listed here, in `script`'s docstring.
"""

import importlib
from types import ModuleType

# The algorithm scripts at the top of the repository, by module name.
SCRIPTS = ("rosmo", "mzu", "mzu_q", "crr", "cql", "bc")


def script(name: str) -> ModuleType:
    """The algorithm script `name` ("rosmo", "mzu", ...: one of SCRIPTS), imported (once per process).

    The benchmarks may use these names of it, the script anatomy of docs/architecture.md:

    - every script: `Args` (its tyro dataclass of flags) and `apply_env_defaults` (the flags that depend on the
      environment filled in), to resolve a run's arguments as results.json stores them (runner.py);
      `make_learning_rate` and `make_optimizer`, to build the optimiser its main() builds (`script_optimizer`);
      `make_network`, `init_train_states` and `make_train_chunk`, to build and time its update (learner.py,
      atari_loader.py, store_memory.py, precision.py);
    - rosmo.py's `one_step_advantage` and `exact_policy_target`, and mzu.py's `search_settings` and `mcts`, the
      targets precision.py computes in float32 and bfloat16.

    A script that renames one of them breaks the benchmark that uses it, not the other way round."""
    if name not in SCRIPTS:
        raise ValueError(f"{name!r} is not an algorithm script; use one of {', '.join(SCRIPTS)}")
    return importlib.import_module(name)


def script_optimizer(module: ModuleType, args):
    """The optimiser an algorithm script's main() builds from its flags `args` (`module` from `script`)."""
    schedule = module.make_learning_rate(args.learning_rate, args.warmup_steps, args.lr_decay_rate, args.lr_decay_steps)
    return module.make_optimizer(schedule, args.weight_decay, args.max_grad_norm)
