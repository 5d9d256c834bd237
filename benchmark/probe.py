"""What a saved ROSMO agent's learned model says about the states of its own Atari data.

    python -m benchmark.probe runs/<run_name>/checkpoint.msgpack [more checkpoints] [--stride 10] [--out probe.json]

A run that stays at the random policy's return (or below it) can do so for reasons the training scalars
cannot tell apart: a value that does not follow the returns, a reward head that does not see the rewards, one-step
advantages that favour an action everywhere, or an acting policy stuck on a few actions. This reads every
`--stride`-th state of the run's data (its --data-dir, run and fraction) and, with the checkpoint's first seed,
measures at each:

- how much the hidden state h(o) differs from state to state (`state_spread`);
- the value v(s) against the discounted return G_t of the data's clipped rewards (the run's discount);
- the reward predicted for the data's action, r_g(s, a_t), where the data's reward is 0 and where it is not;
- the one-step advantages of Eq. 7 for every action, and for the data's action the two advantages Eq. 11 may be
  read with (--behavior-advantage model: through the dynamics; data: the reward and value heads at the real next
  observation), with the share of states each lets through the filter H(adv > 0);
- the policy pi(.|s) and the acting policy pi exp(adv) / Z (what evaluation samples from): the mean probability of
  every action, the mean entropy, and how often the argmax is the data's action.

The data's episodes are split into thirds by the behaviour's epsilon where `behaviour_run_1.json` (written by
common.atari.behaviour) lies beside the shards; otherwise the report has the whole data only. The report prints as
a table and is written as JSON (`--out`, default beside the checkpoint: probe_<step>.json).
"""

import argparse
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Dict, Optional

import jax
import jax.numpy as jnp
import numpy as np

from benchmark.algorithms import script
from common import data, replay, runs
from common.errors import UsageError
from common.networks import logits_to_scalar

MODEL_SCRIPTS = ("rosmo", "mzu", "mzu_q")  # the scripts whose agents have a learned model (represent, dynamics, predict)


def discounted_returns(reward: np.ndarray, is_last: np.ndarray, gamma: float) -> np.ndarray:
    """G_i = r_i + gamma G_{i+1} within each episode (Episodes layout: reward after a_i, 0 on the last step)."""
    out = np.zeros(reward.shape, np.float64)
    running = 0.0
    for i in range(len(reward) - 1, -1, -1):
        running = reward[i] if is_last[i] else reward[i] + gamma * running
        out[i] = running
    return out


def episode_epsilons(data_dir: Path, game: str, run: int, lengths: np.ndarray) -> Optional[np.ndarray]:
    """The behaviour's epsilon of every episode, from the generator's summary, if its episodes are these ones
    (same count and lengths, in shard order); None otherwise (public data, or a fraction of it)."""
    summary = Path(data_dir) / game / f"behaviour_run_{run}.json"
    if not summary.is_file():
        return None
    shards = json.loads(summary.read_text())["shards"]
    eps = [s["epsilon"] for s in shards for _ in s["steps"]]
    steps = [n for s in shards for n in s["steps"]]
    # an episode of n agent steps holds n + 1 observations (the last one without an action)
    if len(steps) != len(lengths) or not np.array_equal(np.asarray(steps) + 1, lengths):
        return None
    return np.asarray(eps)


def make_measure(network, gamma: float):
    """jitted `measure(params, window) -> dict of [B] or [B, A] arrays` for replay windows of length 2.

    The model quantities are rosmo.py's own: Eq. 7's advantages (`one_step_advantage`), the acting policy of Eq. 6
    (`exact_policy_target`, what `make_act` samples from), and Eq. 11's two readings as make_loss_fn computes them:
    'model' = adv_g(s, a_t); 'data' = `data_advantage`, the reward head at h(o_{t+1}) + gamma d_t v(h(o_{t+1})) - v(s),
    with v = 0 past a terminal state. They are read with the online network (what acts); training reads the target network's.
    """
    rosmo = script("rosmo")

    def measure(params, window):
        action = window.action[:, 0]
        states = network.apply(params, window.observation, method=network.represent)  # h(o_t), h(o_{t+1})
        policy_logits, value_logits, reward_logits = network.apply(params, states, method=network.predict)
        value, next_value = logits_to_scalar(value_logits[:, 0]), logits_to_scalar(value_logits[:, 1])
        state = states[:, 0]
        candidates = jnp.broadcast_to(jnp.arange(policy_logits.shape[-1]), value.shape + policy_logits.shape[-1:])
        adv = rosmo.one_step_advantage(network, params, state, value, candidates, gamma)  # [B, A]
        next_state = network.apply(params, state, action, method=network.dynamics)
        reward_model = logits_to_scalar(network.apply(params, next_state, method=network.predict)[2])  # r_g(s, a_t)
        return {
            "state": state.reshape(state.shape[0], -1),
            "value": value,
            "policy": jax.nn.softmax(policy_logits[:, 0]),
            "acting": rosmo.exact_policy_target(policy_logits[:, 0], adv),
            "adv": adv,
            "reward_model": reward_model,
            "behavior_adv_model": jnp.take_along_axis(adv, action[:, None], 1)[:, 0],
            "behavior_adv_data": rosmo.data_advantage(
                logits_to_scalar(reward_logits[:, 1]), next_value, window.absorbing[:, 1], window.discount[:, 0], value, gamma
            ),
        }

    return jax.jit(measure)


def entropy(p: np.ndarray) -> np.ndarray:
    return -np.sum(p * np.log(np.clip(p, 1e-12, 1.0)), axis=-1)


def summarise(m: Dict[str, np.ndarray], action: np.ndarray, reward: np.ndarray, ret: np.ndarray) -> dict:
    """The report of one group of states (arrays as `make_measure` returns them, with the data's action, clipped
    reward and discounted return of each state)."""
    num_actions = m["policy"].shape[1]
    nonzero = reward != 0
    corr = float(np.corrcoef(m["value"], ret)[0, 1]) if np.std(m["value"]) > 0 and np.std(ret) > 0 else float("nan")
    adv_best = np.argmax(m["adv"], axis=1)
    best_share = np.bincount(adv_best, minlength=num_actions) / len(adv_best)  # of the model's best action
    data_share = np.bincount(action, minlength=num_actions) / len(action)  # of the data's action
    state = m["state"]
    return {
        "states": int(len(action)),
        # how much the hidden state differs between states: the std over states of each unit, averaged over the
        # units, relative to the mean magnitude (near 0: the representation does not read the screen yet)
        "state_spread": float(np.mean(np.std(state, axis=0)) / max(np.mean(np.abs(state)), 1e-12)),
        "value_mean": float(np.mean(m["value"])),
        "return_mean": float(np.mean(ret)),
        "value_return_corr": corr,
        "reward_pred_where_reward_nonzero": float(np.mean(m["reward_model"][nonzero])) if nonzero.any() else None,
        "abs_reward_where_nonzero": float(np.mean(np.abs(reward[nonzero]))) if nonzero.any() else None,
        "reward_pred_where_reward_zero": float(np.mean(m["reward_model"][~nonzero])) if (~nonzero).any() else None,
        "adv_mean_per_action": np.mean(m["adv"], axis=0).round(5).tolist(),
        "adv_spread": float(np.mean(np.std(m["adv"], axis=1))),  # across actions, mean over states
        "adv_best_share_per_action": best_share,
        # the share of states whose largest one-step advantage is the data's action: with the controller's
        # actions (the low-epsilon third) it says whether the model's improvement points where the controller does
        "adv_accuracy": float(np.mean(adv_best == action)),
        # what it would be if the best action were independent of the data's: sum over a of both shares
        "adv_accuracy_chance": float(best_share @ data_share),
        "filter_rate_model": float(np.mean(m["behavior_adv_model"] > 0)),
        "filter_rate_data": float(np.mean(m["behavior_adv_data"] > 0)),
        "data_action_share": data_share,
        "policy_mean": np.mean(m["policy"], axis=0),
        "acting_mean": np.mean(m["acting"], axis=0),
        "policy_entropy": float(np.mean(entropy(m["policy"]))),
        "acting_entropy": float(np.mean(entropy(m["acting"]))),
        "policy_accuracy": float(np.mean(np.argmax(m["policy"], 1) == action)),
        "acting_accuracy": float(np.mean(np.argmax(m["acting"], 1) == action)),
    }


def probe(checkpoint: Path, stride: int = 10, batch_size: int = 256, data_dir: Optional[str] = None) -> dict:
    """The report of `checkpoint`'s first seed on every `stride`-th state of its data (module docstring)."""
    payload, meta = runs.read_checkpoint(checkpoint, {})
    algo = meta.get("algo")
    if algo not in MODEL_SCRIPTS:
        raise UsageError(f"checkpoint '{checkpoint}' is a {algo} agent; the probe reads {', '.join(MODEL_SCRIPTS)}")
    args = SimpleNamespace(**meta["args"])
    if not data.is_atari(args.env_id):
        raise UsageError(f"checkpoint '{checkpoint}' was trained on {args.env_id}; the probe reads Atari agents")
    args.compute_dtype = "float32"
    module = script(algo)
    network = module.make_network(args, meta["num_actions"])
    params = jax.tree.map(lambda x: jnp.asarray(x[0]), payload["state"]["params"])  # the first seed's online network

    from common.atari.loader import load_atari  # the Atari loader only where it is needed

    data_dir = data_dir or args.data_dir
    episodes, source = load_atari(args.env_id, args.run, data_dir, args.data_fraction, progress=False)
    store = replay.make_store(episodes, frame_stack=4)
    starts = np.asarray(store.starts)[:: max(1, stride)]
    ret = discounted_returns(episodes.reward.astype(np.float64), episodes.is_last, args.discount)
    first = np.flatnonzero(episodes.is_first)
    lengths = np.diff(np.append(first, episodes.num_steps))
    eps = episode_epsilons(Path(data_dir), args.env_id, args.run, lengths)
    episode_id = np.cumsum(episodes.is_first) - 1

    measure = make_measure(network, args.discount)
    parts = []
    for i in range(0, len(starts), batch_size):
        idx = jnp.asarray(starts[i : i + batch_size])
        window = replay.gather_windows(store, idx, 2, jnp.zeros((len(idx), 2), jnp.int32))
        parts.append(jax.tree.map(np.asarray, measure(params, window)))
    m = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    action, reward = episodes.action[starts], episodes.reward[starts]
    groups = {"all": np.ones(len(starts), bool)}
    if eps is not None:
        state_eps = eps[episode_id[starts]]
        cuts = np.quantile(state_eps, [1 / 3, 2 / 3])
        groups["epsilon_high"] = state_eps > cuts[1]
        groups["epsilon_mid"] = (state_eps > cuts[0]) & (state_eps <= cuts[1])
        groups["epsilon_low"] = state_eps <= cuts[0]
    report = {
        "checkpoint": str(checkpoint),
        "algo": algo,
        "env_id": args.env_id,
        "step": meta.get("step"),
        "data": source,
        "stride": stride,
        "groups": {},
    }
    for name, mask in groups.items():
        g = summarise({k: v[mask] for k, v in m.items()}, action[mask], reward[mask], ret[starts][mask])
        if eps is not None:
            g["epsilon_range"] = [float(eps[episode_id[starts]][mask].min()), float(eps[episode_id[starts]][mask].max())]
        report["groups"][name] = g
    return json.loads(json.dumps(report, default=lambda x: np.asarray(x).round(4).tolist()))


def print_report(report: dict) -> None:
    print(f"{report['algo']} on {report['env_id']} at update {report['step']} ({report['data']})")
    keys = [k for k in report["groups"]["all"] if k != "epsilon_range"]
    names = list(report["groups"])
    print(f"{'':34s}" + "".join(f"{n:>40s}" for n in names))
    for k in keys:
        cells = []
        for n in names:
            v = report["groups"][n][k]
            cells.append(" ".join(f"{x:.2f}" for x in v) if isinstance(v, list) else ("-" if v is None else f"{v:.4g}"))
        print(f"{k:34s}" + "".join(f"{c:>40s}" for c in cells))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "checkpoints",
        type=Path,
        nargs="+",
        help="runs/<run_name>/checkpoint.msgpack of a rosmo, mzu or mzu_q run (or several)",
    )
    parser.add_argument("--stride", type=int, default=10, help="read every stride-th state of the data")
    parser.add_argument("--data-dir", default=None, help="the data's directory, if not the run's --data-dir")
    parser.add_argument(
        "--out", type=Path, default=None, help="the JSON report (default beside the checkpoint; several: one file, required)"
    )
    a = parser.parse_args(argv)
    if len(a.checkpoints) > 1 and a.out is None:
        parser.error("several checkpoints are reported in one file: pass --out FILE")
    reports = []
    for checkpoint in a.checkpoints:
        reports.append(probe(checkpoint, a.stride, data_dir=a.data_dir))
        print_report(reports[-1])
    out = a.out or a.checkpoints[0].with_name(f"probe_{reports[0]['step']}.json")
    runs.write_json(out, reports[0] if len(reports) == 1 else {"reports": reports})
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
