"""``predict`` writes results into arrays nobody reads again (a ReLU into its dead input, a Conv2D's
activation into its pre-activation output), and never into one that is still read: through a
view, under a second graph name, by the caller, or by a layer's state. Each model below sets one
such trap; its outputs are compared with Keras's, and ``trace`` (which keeps every output, so
overwrites nothing) must give the very same numbers."""

import inspect

import numpy as np
import pytest

import scratch
from scratch import parallel
from scratch.layers import activations, core, normalization
from scratch.layers.base import backward_follows, inference_only
from scratch.models.graph import sole_owner, trace_name
from parity.tolerance import assert_close
from tests.scratch.test_loader import randomize

keras = pytest.importorskip("keras")
layers = keras.layers


CONSUMERS = {"relu": lambda: layers.ReLU(name="relu"), "bn": lambda: layers.BatchNormalization(name="relu")}


def _traps(consumer):
    """name -> Keras model whose ``consumer`` (a layer that may write into its input, named
    "relu") input must (or may) not be overwritten."""
    x = keras.Input((6, 6, 3), name="x")
    c = layers.Conv2D(4, 3, name="conv")(x)
    # A view of conv's output, read after the ReLU: its longer path makes Keras run it first, so
    # the ReLU is conv's last reader while the view lives on.
    view = layers.Reshape((4, 16), name="view2")(layers.Reshape((16, 4), name="view")(c))
    r = CONSUMERS[consumer]()(c)
    viewed = keras.Model(x, [layers.Flatten()(r), layers.Flatten()(view)], name="viewed")

    x = keras.Input((6, 6, 3), name="x")
    c = layers.Conv2D(4, 3, name="conv")(x)
    same = layers.Dropout(0.5, name="drop")(c)               # the same array under a second name
    r = CONSUMERS[consumer]()(same)
    aliased = keras.Model(x, [r, layers.GlobalAveragePooling2D()(c)], name="aliased")

    x = keras.Input((6, 6, 3), name="x")
    on_input = keras.Model(x, CONSUMERS[consumer]()(x), name="on_input")   # the caller's array

    x = keras.Input((6, 6, 3), name="x")
    c = layers.Conv2D(4, 3, activation="tanh", name="conv")(x)
    r = layers.ReLU(max_value=0.5, name="relu6")(CONSUMERS[consumer]()(layers.Conv2D(4, 1, name="mix")(c)))
    chain = keras.Model(x, layers.ReLU(name="relu2")(layers.Conv2D(2, 1, activation="sigmoid")(r)), name="chain")
    return dict(viewed=viewed, aliased=aliased, on_input=on_input, chain=chain)


@pytest.mark.parametrize("consumer", sorted(CONSUMERS))
@pytest.mark.parametrize("name", ["viewed", "aliased", "on_input", "chain"])
def test_predict_overwrites_only_what_nobody_reads(tmp_path, name, consumer):
    kmodel = randomize(_traps(consumer)[name], seed=3)
    path = tmp_path / f"{name}.keras"
    kmodel.save(path)
    model = scratch.load(path)
    x = np.random.default_rng(1).normal(size=(5, 6, 6, 3)).astype("float32")
    given = x.copy()
    want = kmodel.predict(x, verbose=0)
    got = model.predict(x)
    np.testing.assert_array_equal(x, given, err_msg=f"{name}: predict changed the caller's input")
    wants, gots = (v if isinstance(v, list) else [v] for v in (want, got))
    traced = model.trace(x)
    for i, (w, g, ref) in enumerate(zip(wants, gots, model.outputs)):
        assert_close(g, w, label=f"{name} output {i}")
        np.testing.assert_array_equal(g, traced[trace_name(*ref)], err_msg=f"{name} output {i} vs trace")


def test_a_layer_whose_input_dies_writes_into_it(tmp_path, monkeypatch):
    """The plain chain conv -> BN -> ReLU -> pool: BN and ReLU are handed their inputs (and the
    result is bit-identical to the allocating path, which ``trace`` runs)."""
    kmodel = randomize(keras.Sequential([keras.Input((8, 8, 2)), layers.Conv2D(3, 3, name="conv"),
                                         layers.BatchNormalization(name="bn"), layers.ReLU(name="relu"),
                                         layers.MaxPooling2D(name="pool")]))
    path = tmp_path / "chain.keras"
    kmodel.save(path)
    model = scratch.load(path)
    handed = []
    for cls in (core.ReLU, normalization.BatchNormalization):
        def spy(self, x, *args, _forward=cls.forward, **kwargs):
            handed.append((type(self).__name__, kwargs.get("overwrite_input", False)))
            return _forward(self, x, *args, **kwargs)
        spy.__signature__ = inspect.signature(cls.forward)
        monkeypatch.setattr(cls, "forward", spy)
    x = np.random.default_rng(2).normal(size=(4, 8, 8, 2)).astype("float32")
    got = model.predict(x)
    assert handed == [("BatchNormalization", True), ("ReLU", True)]
    np.testing.assert_array_equal(got, model.trace(x)["pool"])
    assert_close(got, kmodel.predict(x, verbose=0), label="chain")


def test_sole_owner_refuses_views_second_names_and_outside_references():
    a = np.ones(4)
    values = {"a": a}
    assert not sole_owner(values, "a")     # the local name ``a`` holds it too
    del a
    assert sole_owner(values, "a")
    view = values["a"][1:]
    assert not sole_owner(values, "a")
    del view
    values["b"] = values["a"]
    assert not sole_owner(values, "a")
    del values["b"]
    values["a"].flags.writeable = False
    assert not sole_owner(values, "a")
    assert not sole_owner({"v": np.ones(4)[1:]}, "v")


@pytest.mark.parametrize("activation", ["relu", "sigmoid", "tanh", "swish"])
def test_conv_activation_in_place_equals_the_allocating_path(activation):
    layer = core_conv(activation)
    x = np.random.default_rng(4).normal(size=(3, 9, 9, 5)).astype("float32")
    assert backward_follows()
    separate = layer.forward(x)
    pre = layer._cache[3]
    assert pre is not separate   # backward needs the pre-activation output
    with inference_only():
        assert not backward_follows()
        in_place = layer.forward(x)
    np.testing.assert_array_equal(in_place, separate)
    assert backward_follows()


def core_conv(activation):
    from scratch.layers import conv

    klayer = layers.Conv2D(6, 3, padding="same", activation=activation)
    klayer.build((None, 9, 9, 5))
    rng = np.random.default_rng(5)
    klayer.set_weights([rng.normal(size=w.shape).astype("float32") for w in klayer.get_weights()])
    layer = conv.Conv2D(**klayer.get_config())
    layer.build((None, 9, 9, 5))
    layer.set_weights(klayer.get_weights())
    return layer


@pytest.mark.parametrize("name", activations.NAMES)
def test_an_activation_layer_split_over_the_pool_equals_one_pass(name):
    """The Activation layer runs its function on chunks of rows over the engine's pool (and into
    a dead input): bit for bit what one call on the whole array gives, for every activation."""
    x = np.random.default_rng(6).normal(scale=3.0, size=(40, 30, 40, 60)).astype("float32")   # > 2M: chunked
    assert x.size * 10 >= parallel.MIN_PARALLEL_COST
    whole = activations.get(name).forward(x)
    layer = core.Activation(name)
    np.testing.assert_array_equal(layer.forward(x), whole)
    given = x.copy()
    np.testing.assert_array_equal(layer.forward(given, overwrite_input=True), whole)
    vector = x.reshape(-1)                    # rank 1, long enough to chunk: softmax spans it whole
    np.testing.assert_array_equal(layer.forward(vector), activations.get(name).forward(vector))


def test_a_forward_that_takes_no_overwrite_flag_is_not_handed_one(tmp_path, monkeypatch):
    kmodel = randomize(keras.Sequential([keras.Input((4,)), layers.Dense(3, name="dense"), layers.ReLU(name="relu")]))
    path = tmp_path / "plain.keras"
    kmodel.save(path)
    model = scratch.load(path)
    forward = core.ReLU.forward
    monkeypatch.setattr(core.ReLU, "forward", lambda self, x, training=False: forward(self, x, training=training))
    x = np.random.default_rng(7).normal(size=(2, 4)).astype("float32")
    assert_close(model.predict(x), kmodel.predict(x, verbose=0), label="plain")
