"""Scratch optimizers and schedules against Keras 3's, step by step on the same gradients."""

import keras
import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from parity.tolerance import assert_close
from scratch import optimizers as O

CONFIGS = {
    "SGD": [{}, {"momentum": 0.9}, {"momentum": 0.5, "nesterov": True}],
    "Adam": [{}, {"amsgrad": True}, {"beta_1": 0.8, "epsilon": 1e-3}],
    "AdamW": [{}, {"weight_decay": 0.1, "amsgrad": True}],
    "RMSprop": [{}, {"momentum": 0.9}, {"centered": True}, {"centered": True, "momentum": 0.5, "rho": 0.8}],
    "Adagrad": [{}, {"initial_accumulator_value": 0.5, "epsilon": 1e-4}],
    "Nadam": [{}, {"beta_2": 0.99}],
}
EXTRAS = [{}, {"weight_decay": 0.05}, {"clipnorm": 0.5}, {"clipvalue": 0.1}, {"global_clipnorm": 0.7}]


def run_both(name, cfg, extra, lr, steps, seed, dtype):
    """The same gradients through Keras's optimizer.apply and scratch's; compare after every step."""
    rng = np.random.default_rng(seed)
    shapes = [(3, 4), (4,), (2, 1, 3)]
    init = [rng.normal(size=s).astype(dtype) for s in shapes]
    kvars = [keras.Variable(w, dtype=dtype, name=f"v{i}") for i, w in enumerate(init)]
    kopt = getattr(keras.optimizers, name)(learning_rate=lr, **cfg, **extra)
    svars = {f"v{i}": w.copy() for i, w in enumerate(init)}
    sopt = O.get(name, learning_rate=lr if not isinstance(lr, keras.optimizers.schedules.LearningRateSchedule)
                 else O.schedule_from_config(keras.optimizers.schedules.serialize(lr)), **cfg, **extra)
    for step in range(steps):
        grads = [rng.normal(0, 2, size=s).astype(dtype) for s in shapes]
        if step == 1:
            grads[1][:] = 0.0   # a zero gradient (clipnorm's 0/0 guard, Adam's sqrt(0))
        kopt.apply([keras.ops.convert_to_tensor(g) for g in grads], kvars)
        sopt.apply({f"v{i}": g for i, g in enumerate(grads)}, svars)
        assert sopt.iterations == int(kopt.iterations.numpy())
        for i, kv in enumerate(kvars):
            # each step adds its rounding to the last: the budget grows with the step count
            assert_close(svars[f"v{i}"], np.asarray(kv.numpy()), kind="forward", reduction=(step + 1) ** 2,
                         label=f"{name} {cfg} {extra} {dtype} step {step + 1} v{i}")


@st.composite
def cases(draw):
    name = draw(st.sampled_from(sorted(CONFIGS)))
    extra = draw(st.sampled_from(EXTRAS))
    if name == "AdamW" and "weight_decay" in extra:
        extra = {}
    return (name, draw(st.sampled_from(CONFIGS[name])), extra, draw(st.sampled_from([1e-3, 0.05])),
            draw(st.integers(0, 2**31 - 1)), draw(st.sampled_from(["float32", "float64"])))


@example(("Adam", {}, {}, 1e-3, 0, "float32"))
@example(("SGD", {"momentum": 0.5, "nesterov": True}, {"weight_decay": 0.05}, 0.05, 1, "float64"))
@example(("RMSprop", {"centered": True, "momentum": 0.5, "rho": 0.8}, {"global_clipnorm": 0.7}, 0.05, 2, "float32"))
@example(("Nadam", {}, {"clipnorm": 0.5}, 1e-3, 3, "float64"))
@settings(max_examples=8)
@given(cases())
def test_optimizer_matches_keras(case):
    name, cfg, extra, lr, seed, dtype = case
    run_both(name, cfg, extra, lr, 5, seed, dtype)


SCHEDULE_CASES = [
    ("ExponentialDecay", dict(initial_learning_rate=0.1, decay_steps=3, decay_rate=0.5)),
    ("ExponentialDecay", dict(initial_learning_rate=0.1, decay_steps=3, decay_rate=0.5, staircase=True)),
    ("InverseTimeDecay", dict(initial_learning_rate=0.1, decay_steps=2, decay_rate=0.7, staircase=True)),
    ("PiecewiseConstantDecay", dict(boundaries=[2, 5], values=[0.1, 0.05, 0.01])),
    ("CosineDecay", dict(initial_learning_rate=0.1, decay_steps=6, alpha=0.1)),
    ("CosineDecay", dict(initial_learning_rate=0.0, decay_steps=5, warmup_target=0.1, warmup_steps=3)),
]


@pytest.mark.parametrize("name,cfg", SCHEDULE_CASES)
def test_schedule_values_and_use(name, cfg):
    ks = getattr(keras.optimizers.schedules, name)(**cfg)
    ss = O.SCHEDULES[name](**cfg)
    for step in [0, 1, 2, 3, 5, 6, 9, 20]:
        assert_close(np.float32(ss(step)), np.float32(ks(step)), kind="forward", label=f"{name} step {step}")
    run_both("SGD", {"momentum": 0.9}, {}, ks, 8, 0, "float32")


def test_errors():
    with pytest.raises(O.OptimizerError, match="Only one of `clipnorm`, `clipvalue` and `global_clipnorm`"):
        O.Adam(clipnorm=1.0, clipvalue=1.0)
    with pytest.raises(O.OptimizerError, match=r"`use_ema` is not supported by scratch. Received: use_ema=True"):
        O.Adam(use_ema=True)
    with pytest.raises(O.OptimizerError, match="`momentum` must be a float between"):
        O.SGD(momentum=2)
    with pytest.raises(O.OptimizerError, match="weight_decay=None"):
        O.AdamW(weight_decay=None)
    with pytest.raises(O.OptimizerError, match="Unsupported optimizer: 'lion'"):
        O.get("lion")
    with pytest.raises(O.OptimizerError, match="decay_steps must be > 0|`decay_steps` must be > 0"):
        O.ExponentialDecay(0.1, 0, 0.5)
    with pytest.raises(O.OptimizerError, match="The length of boundaries should be 1 less"):
        O.PiecewiseConstantDecay([1, 2], [0.1])
    with pytest.raises(O.OptimizerError, match="No gradients provided"):
        O.SGD().apply({"w": None}, {"w": np.zeros(2)})
