"""Keras 3 optimizers and learning-rate schedules on NumPy arrays.

``opt.apply(grads, variables)`` takes two dicts keyed alike (``{name: ndarray}``) and updates the
variables *in place*, so a model whose layers hold those arrays sees the new values. One call is
one Keras ``optimizer.apply`` (``keras/src/optimizers/base_optimizer.py``), in its order:

1. gradients are clipped: ``clipnorm`` per tensor (``g * c / max(||g||, c)``), else
   ``global_clipnorm`` over all of them (``g * c * min(1/||G||, 1/c)``), else ``clipvalue``
   (``clip(g, -v, v)``); Keras allows one of the three;
2. weight decay (decoupled, before the update, at the current learning rate):
   ``w <- w - w * weight_decay * lr``;
3. each optimizer's ``update_step``, with ``t = iterations + 1`` where it needs a step;
4. ``iterations += 1``.

The learning rate is ``learning_rate`` or a schedule evaluated at ``iterations`` (before the
increment). As in Keras, it and the schedules are held in float32 and cast to each variable's
dtype. Python hyper-parameters enter as Keras's ops take them: one that Keras passes through
``ops.cast(x, variable.dtype)`` (momentum, beta_1/beta_2 in Adam's powers, Nadam's constants, the
weight decay) is first made a float32 tensor by TensorFlow, so in a float64 run it carries
float32 rounding (``_cast``); one mixed straight into an op with a tensor (``1 - beta_1``,
``epsilon``, ``rho``) takes the tensor's dtype exactly.
tf_keras's optimizers (the committed tf_keras models) follow the same order and update rules.
"""

import math

import numpy as np

from .errors import ScratchError


class OptimizerError(ScratchError, ValueError):
    """An optimizer or schedule got arguments it cannot use."""


def _cast(x, dtype):
    """``ops.cast(python_float, dtype)`` under TensorFlow: through a float32 tensor first."""
    return np.dtype(dtype).type(np.float32(x))


# ---- learning-rate schedules --------------------------------------------------------------------
class LearningRateSchedule:
    """``schedule(step) -> learning rate`` computed in float32, as Keras converts the initial rate."""

    def get_config(self):
        return {k: v for k, v in vars(self).items()}


class _StepDecay(LearningRateSchedule):
    """What ExponentialDecay and InverseTimeDecay share: their arguments and ``step / decay_steps``."""

    def __init__(self, initial_learning_rate, decay_steps, decay_rate, staircase=False, name=None):
        if decay_steps <= 0:
            raise OptimizerError(f"Argument `decay_steps` must be > 0. Received: decay_steps={decay_steps}")
        self.initial_learning_rate, self.decay_steps = initial_learning_rate, decay_steps
        self.decay_rate, self.staircase, self.name = decay_rate, staircase, name or type(self).__name__

    def _progress(self, step):
        """``step / decay_steps`` in float32, floored when ``staircase``."""
        p = np.float32(step) / np.float32(self.decay_steps)
        return np.floor(p) if self.staircase else p


class ExponentialDecay(_StepDecay):
    """``lr0 * decay_rate ** (step / decay_steps)`` (the exponent floored when ``staircase``)."""

    def __call__(self, step):
        f = np.float32
        return f(self.initial_learning_rate) * np.power(f(self.decay_rate), self._progress(step))


class InverseTimeDecay(_StepDecay):
    """``lr0 / (1 + decay_rate * step / decay_steps)`` (the ratio floored when ``staircase``)."""

    def __call__(self, step):
        f = np.float32
        return f(self.initial_learning_rate) / (f(1) + f(self.decay_rate) * self._progress(step))


class PiecewiseConstantDecay(LearningRateSchedule):
    """``values[0]`` while ``step <= boundaries[0]``, ``values[i]`` for ``b[i-1] < step <= b[i]``, then the last."""

    def __init__(self, boundaries, values, name="PiecewiseConstant"):
        if len(boundaries) != len(values) - 1:
            raise OptimizerError("The length of boundaries should be 1 less than the length of values. "
                                 f"Received: boundaries={boundaries} of length {len(boundaries)}, and "
                                 f"values={values} of length {len(values)}.")
        self.boundaries, self.values, self.name = list(boundaries), list(values), name

    def __call__(self, step):
        i = int(np.searchsorted(np.asarray(self.boundaries, dtype=np.float64), float(step), side="left"))
        return np.float32(self.values[i])


class CosineDecay(LearningRateSchedule):
    """``lr * ((1 - alpha) * 0.5 * (1 + cos(pi * min(step, decay_steps) / decay_steps)) + alpha)``.

    With ``warmup_target``: linear from ``initial_learning_rate`` to ``warmup_target`` over
    ``warmup_steps``, then the cosine decay from ``warmup_target``.
    """

    def __init__(self, initial_learning_rate, decay_steps, alpha=0.0, name="CosineDecay", warmup_target=None,
                 warmup_steps=0):
        if decay_steps <= 0:
            raise OptimizerError(f"Argument `decay_steps` must be > 0. Received: decay_steps={decay_steps}")
        self.initial_learning_rate, self.decay_steps, self.alpha = initial_learning_rate, decay_steps, alpha
        self.name, self.warmup_target, self.warmup_steps = name, warmup_target, warmup_steps

    def _decay(self, step, lr):
        f = np.float32
        cosine = f(0.5) * (f(1) + np.cos(f(math.pi) * (step / f(self.decay_steps))))
        return lr * ((f(1) - f(self.alpha)) * cosine + f(self.alpha))

    def __call__(self, step):
        f = np.float32
        lr0, step = f(self.initial_learning_rate), f(step)
        if self.warmup_target is None:
            return self._decay(np.minimum(step, f(self.decay_steps)), lr0)
        warm, target = f(self.warmup_steps), f(self.warmup_target)
        step = np.minimum(step, f(self.decay_steps) + warm)
        if step < warm:
            return (target - lr0) * (step / warm) + lr0
        return self._decay(step - warm, target)


SCHEDULES = {c.__name__: c for c in (ExponentialDecay, InverseTimeDecay, PiecewiseConstantDecay, CosineDecay)}


# ---- the base class -----------------------------------------------------------------------------
class Optimizer:
    """Clipping, weight decay, the learning rate and the iteration count (module docstring)."""

    _REFUSED = {"use_ema": False, "loss_scale_factor": None, "gradient_accumulation_steps": None}
    _IGNORED = ("ema_momentum", "ema_overwrite_frequency", "is_legacy_optimizer", "jit_compile", "decay")

    def __init__(self, learning_rate, weight_decay=None, clipnorm=None, clipvalue=None, global_clipnorm=None,
                 name=None, **kwargs):
        for key, default in self._REFUSED.items():
            value = kwargs.pop(key, default)
            if value not in (default, 0):
                raise OptimizerError(f"{type(self).__name__}: `{key}` is not supported by scratch. "
                                     f"Received: {key}={value!r}")
        for key in self._IGNORED:
            kwargs.pop(key, None)
        if kwargs:
            raise OptimizerError(f"Argument(s) not recognized: {kwargs}")
        if sum(v is not None and v != 0 for v in (clipnorm, clipvalue, global_clipnorm)) > 1:
            raise OptimizerError("Only one of `clipnorm`, `clipvalue` and `global_clipnorm` can be set. Received: "
                                 f"clipnorm={clipnorm}, clipvalue={clipvalue}, global_clipnorm={global_clipnorm}")
        if isinstance(learning_rate, dict):
            learning_rate = schedule_from_config(learning_rate)
        self._learning_rate = learning_rate
        self.weight_decay, self.clipnorm, self.clipvalue = weight_decay, clipnorm, clipvalue
        self.global_clipnorm = global_clipnorm
        self.name = name or _snake(type(self).__name__)
        self.iterations = 0
        self.slots = {}          # {slot name: {variable name: ndarray}}
        self.exclude_from_weight_decay_names = ()

    @property
    def learning_rate(self):
        lr = self._learning_rate
        return lr(self.iterations) if callable(lr) else np.float32(lr)

    def exclude_from_weight_decay(self, var_names=()):
        """Variables whose name contains any of ``var_names`` get no weight decay (as Keras's ``var_names``)."""
        self.exclude_from_weight_decay_names = tuple(var_names)

    # ---- one step ---------------------------------------------------------------------------
    def apply(self, grads, variables):
        names = [n for n in variables if grads.get(n) is not None]
        if not names:
            raise OptimizerError("No gradients provided for any variable.")
        if not self.slots:
            self.build({n: variables[n] for n in names})
        g = self._clip([np.asarray(grads[n], variables[n].dtype) for n in names])
        lr = self.learning_rate
        if self.weight_decay:
            for n in names:
                if not any(p in n for p in self.exclude_from_weight_decay_names):
                    w = variables[n]
                    w -= w * _cast(self.weight_decay, w.dtype) * w.dtype.type(lr)
        self._before_updates(variables[names[0]].dtype)
        for n, gi in zip(names, g):
            self.update_step(n, gi, variables[n], variables[n].dtype.type(lr))
        self.iterations += 1

    def _clip(self, grads):
        if self.clipnorm and self.clipnorm > 0:
            out = []
            for g in grads:
                c = g.dtype.type(self.clipnorm)
                norm = np.sqrt(np.sum(np.square(g)))
                out.append(g * c / np.maximum(norm, c))
            return out
        if self.global_clipnorm and self.global_clipnorm > 0:
            norm = np.sqrt(np.sum([np.sum(np.square(g)) for g in grads]))
            c = norm.dtype.type(self.global_clipnorm)
            scale = c * np.minimum(1.0 / norm, 1.0 / c) + (norm - norm)   # NaN for a non-finite norm, as Keras
            return [g * g.dtype.type(scale) for g in grads]
        if self.clipvalue and self.clipvalue > 0:
            return [np.clip(g, -self.clipvalue, self.clipvalue).astype(g.dtype) for g in grads]
        return grads

    def build(self, variables):
        for slot, init in self.slot_names():
            # Keras's Constant initializer casts a Python float: through float32 (Adagrad's 0.1)
            self.slots[slot] = {n: np.full_like(w, _cast(init, w.dtype)) for n, w in variables.items()}

    def slot_names(self):
        return []

    def _before_updates(self, dtype):
        pass

    def update_step(self, name, g, w, lr):
        raise NotImplementedError

    def get_config(self):
        lr = self._learning_rate
        return {"name": self.name, "learning_rate": lr.get_config() if hasattr(lr, "get_config") else float(lr),
                "weight_decay": self.weight_decay, "clipnorm": self.clipnorm, "clipvalue": self.clipvalue,
                "global_clipnorm": self.global_clipnorm}


class SGD(Optimizer):
    """``m <- momentum*m - lr*g``; ``w <- w + m`` (nesterov: ``w <- w + momentum*m - lr*g``); plain ``w -= lr*g``."""

    def __init__(self, learning_rate=0.01, momentum=0.0, nesterov=False, **kwargs):
        super().__init__(learning_rate, **kwargs)
        if not isinstance(momentum, float) or momentum < 0 or momentum > 1:
            raise OptimizerError("`momentum` must be a float between [0, 1].")
        self.momentum, self.nesterov = momentum, bool(nesterov)

    def slot_names(self):
        return [("momentum", 0.0)] if self.momentum != 0 else []

    def update_step(self, name, g, w, lr):
        if self.momentum == 0:
            w -= g * lr
            return
        m, mom = self.slots["momentum"][name], _cast(self.momentum, w.dtype)
        m[...] = m * mom - g * lr
        w += (m * mom - g * lr) if self.nesterov else m


class Adam(Optimizer):
    """``alpha = lr*sqrt(1-b2^t)/(1-b1^t)``; ``m += (g-m)(1-b1)``; ``v += (g^2-v)(1-b2)``;
    amsgrad ``v <- v_hat = max(v_hat, v)``; ``w -= m*alpha / (sqrt(v) + epsilon)``."""

    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7, amsgrad=False, **kwargs):
        super().__init__(learning_rate, **kwargs)
        self.beta_1, self.beta_2, self.epsilon, self.amsgrad = beta_1, beta_2, epsilon, bool(amsgrad)

    def slot_names(self):
        return [("momentum", 0.0), ("velocity", 0.0)] + [("velocity_hat", 0.0)] * self.amsgrad

    def update_step(self, name, g, w, lr):
        c = w.dtype.type
        t = c(self.iterations + 1)
        b1p, b2p = np.power(_cast(self.beta_1, w.dtype), t), np.power(_cast(self.beta_2, w.dtype), t)
        m, v = self.slots["momentum"][name], self.slots["velocity"][name]
        alpha = lr * np.sqrt(c(1) - b2p) / (c(1) - b1p)
        m += (g - m) * c(1 - self.beta_1)
        v += (np.square(g) - v) * c(1 - self.beta_2)
        if self.amsgrad:
            v_hat = self.slots["velocity_hat"][name]
            np.maximum(v_hat, v, out=v_hat)
            v = v_hat
        w -= (m * alpha) / (np.sqrt(v) + c(self.epsilon))


class AdamW(Adam):
    """Adam with decoupled weight decay (default 0.004), applied by the base class before the update."""

    def __init__(self, learning_rate=0.001, weight_decay=0.004, beta_1=0.9, beta_2=0.999, epsilon=1e-7,
                 amsgrad=False, **kwargs):
        if weight_decay is None:
            raise OptimizerError("Argument `weight_decay` must be a float. Received: weight_decay=None")
        super().__init__(learning_rate, beta_1, beta_2, epsilon, amsgrad, weight_decay=weight_decay, **kwargs)


class RMSprop(Optimizer):
    """``v <- rho v + (1-rho) g^2``; centered: ``a <- rho a + (1-rho) g``, ``den = v - a^2 + eps``, else
    ``den = v + eps``; ``inc = lr*g / sqrt(den)``; momentum: ``m <- momentum*m + inc``, ``w -= m``."""

    def __init__(self, learning_rate=0.001, rho=0.9, momentum=0.0, epsilon=1e-7, centered=False, **kwargs):
        super().__init__(learning_rate, **kwargs)
        self.rho, self.momentum, self.epsilon, self.centered = rho, momentum, epsilon, bool(centered)

    def slot_names(self):
        return ([("velocity", 0.0)] + [("momentum", 0.0)] * (self.momentum > 0)
                + [("average_gradient", 0.0)] * self.centered)

    def update_step(self, name, g, w, lr):
        c = w.dtype.type
        rho = c(self.rho)
        v = self.slots["velocity"][name]
        v[...] = rho * v + c(1 - self.rho) * np.square(g)
        if self.centered:
            a = self.slots["average_gradient"][name]
            a[...] = rho * a + c(1 - self.rho) * g
            den = v - np.square(a) + c(self.epsilon)
        else:
            den = v + c(self.epsilon)
        inc = (lr * g) / np.sqrt(den)
        if self.momentum > 0:
            m = self.slots["momentum"][name]
            m[...] = c(self.momentum) * m + inc
            w -= m
        else:
            w -= inc


class Adagrad(Optimizer):
    """``acc += g^2`` (from ``initial_accumulator_value``); ``w -= lr*g / sqrt(acc + epsilon)``."""

    def __init__(self, learning_rate=0.001, initial_accumulator_value=0.1, epsilon=1e-7, **kwargs):
        super().__init__(learning_rate, **kwargs)
        self.initial_accumulator_value, self.epsilon = initial_accumulator_value, epsilon

    def slot_names(self):
        return [("accumulator", self.initial_accumulator_value)]

    def update_step(self, name, g, w, lr):
        acc = self.slots["accumulator"][name]
        acc += np.square(g)
        w -= (lr * g) / np.sqrt(acc + w.dtype.type(self.epsilon))


class Nadam(Optimizer):
    """Adam with Nesterov momentum and Keras's momentum schedule ``u_t = b1 (1 - 0.5 * 0.96^t)``.

    Before each step's updates ``u_product <- u_product * b1 * (1 - 0.5 * 0.96^t)``; then
    ``m_hat = u_{t+1} m / (1 - u_product u_{t+1}) + (1 - u_t) g / (1 - u_product)``,
    ``v_hat = v / (1 - b2^t)``, ``w -= lr m_hat / (sqrt(v_hat) + eps)``.
    """

    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7, **kwargs):
        super().__init__(learning_rate, **kwargs)
        self.beta_1, self.beta_2, self.epsilon = beta_1, beta_2, epsilon
        self.u_product = None

    def slot_names(self):
        return [("momentum", 0.0), ("velocity", 0.0)]

    def _before_updates(self, dtype):
        c = np.dtype(dtype).type
        if self.u_product is None:
            self.u_product = c(1.0)
        self.u_product = c(self.u_product * c(self.beta_1) * (c(1) - c(0.5) * np.power(c(0.96),
                                                                                          c(self.iterations + 1))))

    def update_step(self, name, g, w, lr):
        c = w.dtype.type
        t, t1 = c(self.iterations + 1), c(self.iterations + 2)
        b1, b2, decay = _cast(self.beta_1, w.dtype), _cast(self.beta_2, w.dtype), _cast(0.96, w.dtype)
        u_t = b1 * (c(1) - c(0.5) * np.power(decay, t))
        u_t1 = b1 * (c(1) - c(0.5) * np.power(decay, t1))
        up_t = c(self.u_product)
        up_t1 = up_t * u_t1
        m, v = self.slots["momentum"][name], self.slots["velocity"][name]
        m += (g - m) * (c(1) - b1)
        v += (np.square(g) - v) * (c(1) - b2)
        m_hat = u_t1 * m / (c(1) - up_t1) + (c(1) - u_t) * g / (c(1) - up_t)
        v_hat = v / (c(1) - np.power(b2, t))
        w -= (m_hat * lr) / (np.sqrt(v_hat) + c(self.epsilon))


OPTIMIZERS = {c.__name__: c for c in (SGD, Adam, AdamW, RMSprop, Adagrad, Nadam)}


def get(identifier, **kwargs):
    """An optimizer from an instance, a class name or a lower-case Keras alias ('adam', 'sgd', 'rmsprop')."""
    if isinstance(identifier, Optimizer):
        return identifier
    by_lower = {k.lower(): k for k in OPTIMIZERS}
    name = identifier if identifier in OPTIMIZERS else by_lower.get(str(identifier).lower())
    if name is None:
        raise OptimizerError(f"Unsupported optimizer: {identifier!r}. Supported: {sorted(OPTIMIZERS)}")
    return OPTIMIZERS[name](**kwargs)


def schedule_from_config(config):
    """A schedule from Keras's serialized ``{"class_name": ..., "config": {...}}``."""
    name = config.get("class_name")
    if name not in SCHEDULES:
        raise OptimizerError(f"Unsupported learning-rate schedule: {name!r}. Supported: {sorted(SCHEDULES)}")
    return SCHEDULES[name](**config.get("config", {}))


def _snake(name):
    return "".join("_" + c.lower() if c.isupper() and i else c.lower() for i, c in enumerate(name))
