r"""L-BFGS with a strong-Wolfe ("zoom") or backtracking line search.

The pure parts (two-loop recursion, cubic interpolation, the line searches on
a scalar function :math:`\varphi(\alpha)`) are module-level functions; the
:class:`LBFGS` optimizer wires them to the registered ParamStates.

Line search (Nocedal & Wright, Algorithms 3.5 and 3.6), on
:math:`\varphi(\alpha) = F(\theta + \alpha d)` with :math:`\varphi_0 = F(\theta)`,
:math:`\varphi'_0 = \langle\nabla F(\theta), d\rangle < 0`, first trial :math:`\alpha = 1`:

* sufficient decrease: :math:`\varphi(\alpha) \le \varphi_0 + c_1\alpha\varphi'_0`, or the
  approximate Wolfe test of Hager & Zhang (2005),
  :math:`\varphi'(\alpha) \le (2c_1 - 1)\varphi'_0` and
  :math:`\varphi(\alpha) \le \varphi_0 + 10^{-6}\lvert\varphi_0\rvert`, which keeps
  the search working when float32 rounding hides the decrease near a minimum;
* curvature (strong Wolfe): :math:`\lvert\varphi'(\alpha)\rvert \le c_2\lvert\varphi'_0\rvert`.

``'zoom'`` brackets by doubling :math:`\alpha`, then zooms with safeguarded cubic
interpolation (bisection when the cubic minimiser is not inside the middle 80% of
the interval). ``'backtracking'`` halves :math:`\alpha` until sufficient decrease
(values only, no gradients). If the budget runs out, the lowest trial with
sufficient decrease is taken; if there is none, the step is 0 and the L-BFGS
memory is cleared (the next step starts again from a scaled gradient step).
"""

from __future__ import annotations

import inspect
from typing import Any, NamedTuple, Optional

import brainstate
import jax
import jax.numpy as jnp

from .. import _checks as checks
from .. import _units
from .._gradients import check_gradients, gradient_mantissas, split_gradients
from .._hyper import Hyper, captured
from .._optimizer import Optimizer
from .._storage import OptimizerState
from ..rules._base import UpdateRule

LINESEARCHES = ('zoom', 'backtracking')
#: relative tolerance of the approximate-Wolfe decrease test (Hager & Zhang; optax's approx_dec_rtol)
APPROX_DECREASE_RTOL = 1e-6


def tree_dot(a, b, dtype):
    """:math:`\\sum_i \\langle a_i, b_i\\rangle` over two lists of arrays, in ``dtype``."""
    total = jnp.zeros((), dtype)
    for x, y in zip(a, b):
        total = total + jnp.sum(x * y).astype(dtype)
    return total


def two_loop(grads, diff_params, diff_grads, rho, gamma, newest, dtype):
    r"""L-BFGS two-loop recursion: :math:`H g` from the stored pairs (Nocedal & Wright, Alg. 7.4).

    ``diff_params``/``diff_grads`` are lists of ``(m, *shape)`` ring buffers of
    :math:`s_j`/:math:`y_j`, ``rho`` the ``(m,)`` :math:`1/\langle s_j, y_j\rangle` (0 for an empty
    or rejected slot, which makes it a no-op), ``gamma`` the initial scaling
    :math:`H_0 = \gamma I` and ``newest`` the slot of the most recent pair.

    >>> import jax.numpy as jnp
    >>> s = [jnp.array([[1.0, 0.0]])]; y = [jnp.array([[4.0, 0.0]])]     # curvature 4 along e_1
    >>> out = two_loop([jnp.array([8.0, 2.0])], s, y, jnp.array([0.25]), 1.0, 0, jnp.float32)
    >>> out[0].tolist()
    [2.0, 2.0]
    """
    m = rho.shape[0]
    newest_first = (newest - jnp.arange(m)) % m

    def first(q, j):
        alpha = rho[j] * tree_dot([s[j] for s in diff_params], q, dtype)
        q = [qi - alpha.astype(qi.dtype) * y[j] for qi, y in zip(q, diff_grads)]
        return q, alpha

    q, alphas = jax.lax.scan(first, list(grads), newest_first)
    gamma = jnp.asarray(gamma)
    r = [gamma.astype(qi.dtype) * qi for qi in q]

    def second(r, j_alpha):
        j, alpha = j_alpha
        beta = rho[j] * tree_dot([y[j] for y in diff_grads], r, dtype)
        r = [ri + (alpha - beta).astype(ri.dtype) * s[j] for ri, s in zip(r, diff_params)]
        return r, None

    r, _ = jax.lax.scan(second, r, (newest_first[::-1], alphas[::-1]))
    return r


def cubic_minimizer(a0, f0, g0, a1, f1, g1):
    r"""Minimiser of the cubic through :math:`(a_0, f_0, f'_0)` and :math:`(a_1, f_1, f'_1)`
    (Nocedal & Wright eq. 3.59), and whether it exists.

    >>> a, ok = cubic_minimizer(0.0, 0.0, -2.0, 2.0, 0.0, 2.0)    # (a - 1)^2 - 1
    >>> round(float(a), 6), bool(ok)
    (1.0, True)
    """
    d1 = g0 + g1 - 3.0 * (f0 - f1) / (a0 - a1)
    disc = d1 * d1 - g0 * g1
    d2 = jnp.sign(a1 - a0) * jnp.sqrt(jnp.maximum(disc, 0.0))
    a = a1 - (a1 - a0) * (g1 + d2 - d1) / (g1 - g0 + 2.0 * d2)
    return a, (disc >= 0.0) & jnp.isfinite(a)


class _Zoom(NamedTuple):
    n: Any
    a_prev: Any
    f_prev: Any
    g_prev: Any
    a_next: Any
    zooming: Any
    lo: Any
    f_lo: Any
    g_lo: Any
    hi: Any
    f_hi: Any
    g_hi: Any
    done: Any
    a_star: Any
    best_a: Any
    best_f: Any


def _sufficient(a, f, g, f0, g0, c1):
    armijo = f <= f0 + c1 * a * g0
    approx = (g <= (2.0 * c1 - 1.0) * g0) & (f <= f0 + APPROX_DECREASE_RTOL * jnp.abs(f0))
    return (armijo | approx) & jnp.isfinite(f)


def zoom_linesearch(phi, f0, g0, c1, c2, max_steps, loop=jax.lax.while_loop):
    r"""Strong-Wolfe line search; ``phi(a) -> (value, slope)``. Returns ``(stepsize, evaluations)``.

    ``loop`` is the while-loop primitive (``brainstate.transform.while_loop``
    when ``phi`` touches States).

    >>> import jax.numpy as jnp
    >>> phi = lambda a: ((a - 3.0) ** 2, 2.0 * (a - 3.0))              # minimum at 3
    >>> a, n = zoom_linesearch(phi, jnp.float32(9.0), jnp.float32(-6.0), 1e-4, 0.9, 20)
    >>> bool(jnp.abs(2.0 * (a - 3.0)) <= 0.9 * 6.0), int(n) <= 20        # strong Wolfe holds
    (True, True)
    """
    dtype = jnp.result_type(f0)
    zero = jnp.zeros((), dtype)
    init = _Zoom(jnp.zeros((), jnp.int32), zero, f0, g0, jnp.ones((), dtype), jnp.asarray(False),
                 zero, f0, g0, zero, f0, g0, jnp.asarray(False), zero, zero, f0)

    def body(c: _Zoom) -> _Zoom:
        a = c.a_next
        f, g = phi(a)
        f = jnp.asarray(f, dtype)
        g = jnp.asarray(g, dtype)
        sufficient = _sufficient(a, f, g, f0, g0, c1)
        curvature = (jnp.abs(g) <= c2 * jnp.abs(g0)) & jnp.isfinite(g)
        better = sufficient & (f < c.best_f)
        best_a = jnp.where(better, a, c.best_a)
        best_f = jnp.where(better, f, c.best_f)
        # Bracketing phase (Algorithm 3.5).
        b_high = (~sufficient) | ((f >= c.f_prev) & (c.n > 0))
        b_done = (~b_high) & curvature
        b_low = (~b_high) & (~b_done) & (g >= 0.0)
        # Zoom phase (Algorithm 3.6).
        z_high = (~sufficient) | (f >= c.f_lo)
        z_done = (~z_high) & curvature
        z_swap = (~z_high) & (~z_done) & (g * (c.hi - c.lo) >= 0.0)
        pick = lambda cond, x, y: jax.tree.map(lambda u, v: jnp.where(cond, u, v), x, y)
        point, prev = (a, f, g), (c.a_prev, c.f_prev, c.g_prev)
        lo_z, hi_z = (c.lo, c.f_lo, c.g_lo), (c.hi, c.f_hi, c.g_hi)
        # after bracketing: high -> [prev, point]; low -> [point, prev]
        lo_b = pick(b_low, point, prev)
        hi_b = pick(b_low, prev, point)
        # after zooming: high -> hi = point; else (swap: hi = lo) and lo = point
        hi_zz = pick(z_high, point, pick(z_swap, lo_z, hi_z))
        lo_zz = pick(z_high, lo_z, point)
        lo_new = pick(c.zooming, lo_zz, pick(b_high | b_low, lo_b, lo_z))
        hi_new = pick(c.zooming, hi_zz, pick(b_high | b_low, hi_b, hi_z))
        done = jnp.where(c.zooming, z_done, b_done)
        zooming = c.zooming | b_high | b_low
        cubic, ok = cubic_minimizer(*lo_new, *hi_new)
        left = jnp.minimum(lo_new[0], hi_new[0])
        right = jnp.maximum(lo_new[0], hi_new[0])
        ok = ok & (cubic > left + 0.1 * (right - left)) & (cubic < right - 0.1 * (right - left))
        interpolated = jnp.where(ok, cubic, 0.5 * (lo_new[0] + hi_new[0]))
        a_next = jnp.where(zooming, interpolated, 2.0 * a)
        return _Zoom(c.n + 1, a, f, g, a_next.astype(dtype), zooming, *lo_new, *hi_new, done,
                     jnp.where(done, a, c.a_star), best_a, best_f)

    def cond(c: _Zoom):
        width = jnp.abs(c.hi - c.lo)
        collapsed = c.zooming & (width <= 1e-10 * jnp.maximum(1.0, jnp.abs(c.lo)))
        return (~c.done) & (c.n < max_steps) & (~collapsed)

    final = loop(cond, body, init)
    fallback = jnp.where(final.best_f < f0, final.best_a, zero)
    return jnp.where(final.done, final.a_star, fallback), final.n


def backtracking_linesearch(value, f0, g0, c1, max_steps, loop=jax.lax.while_loop):
    r"""Armijo backtracking (halving from 1); ``value(a) -> phi(a)``. Returns ``(stepsize, evaluations)``.

    >>> import jax.numpy as jnp
    >>> a, n = backtracking_linesearch(lambda a: (a - 0.2) ** 2, jnp.float32(0.04), jnp.float32(-0.4),
    ...                                1e-4, 20)
    >>> float(a), int(n)
    (0.25, 3)
    """
    dtype = jnp.result_type(f0)
    init = (jnp.zeros((), jnp.int32), jnp.ones((), dtype), jnp.asarray(False), jnp.zeros((), dtype))

    def body(c):
        n, a, _, _ = c
        f = jnp.asarray(value(a), dtype)
        done = (f <= f0 + c1 * a * g0) & jnp.isfinite(f)
        return n + 1, jnp.where(done, a, 0.5 * a), done, jnp.where(done, a, 0.0).astype(dtype)

    n, _, done, a_star = loop(lambda c: (~c[2]) & (c[0] < max_steps), body, init)
    return jnp.where(done, a_star, jnp.zeros((), dtype)), n


#: L-BFGS's per-parameter buffers: the histories of s and y (memory first), the previous point and gradient
BUFFER_NAMES = ('diff_params', 'diff_grads', 'prev_param', 'prev_grad')


def _lbfgs_rule(memory_size: int) -> UpdateRule:
    names = BUFFER_NAMES

    def init(param):
        ring = jnp.zeros((memory_size,) + tuple(param.shape), param.dtype)
        return {'diff_params': ring, 'diff_grads': ring, 'prev_param': jnp.zeros_like(param),
                'prev_grad': jnp.zeros_like(param)}

    def update(*args):
        raise NotImplementedError("L-BFGS couples all parameters; the LBFGS optimizer applies it")

    return UpdateRule('lbfgs', names, init, update,
                      {'diff_params': (0, 1), 'diff_grads': (1, 0), 'prev_param': (0, 1), 'prev_grad': (1, 0)})


def _check_linesearch(name, value):
    if value is None or (isinstance(value, str) and value in LINESEARCHES):
        return value
    if hasattr(value, 'init') and hasattr(value, 'update'):
        raise ValueError(f"Unknown linesearch {type(value).__name__}: this LBFGS runs its own 'zoom' or "
                         f"'backtracking' search; for an optax line search use "
                         f"OptaxOptimizer(optax.lbfgs(linesearch=...))")
    raise ValueError(f"Unknown linesearch {value!r}: use 'zoom', 'backtracking' or None")


def _no_argument_form(value_fn, opt):
    """``value_fn`` as a function of no arguments: one taking the parameters (optax's and braintools'
    ``value_fn(params)``) is called with the registered States' current values."""
    try:
        parameters = inspect.signature(value_fn).parameters.values()
    except (TypeError, ValueError):
        return value_fn
    required = [p for p in parameters if p.default is p.empty
                and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if not required:
        return value_fn
    cache = opt.__dict__.setdefault('_value_fn_forms', {})
    wrapped = cache.get(id(value_fn))
    if wrapped is None or wrapped[0] is not value_fn:
        wrapped = (value_fn, lambda: value_fn(opt.param_states.to_pytree_value()))
        cache[id(value_fn)] = wrapped
    return wrapped[1]


class LBFGS(Optimizer):
    r"""L-BFGS (Liu & Nocedal 1989) with a strong-Wolfe or backtracking line search.

    One call of :meth:`update` is one L-BFGS iteration. With the gradient
    :math:`g_k` at the current parameters :math:`\theta_k` (after the common
    processing; **coupled** weight decay adds :math:`\lambda\theta`, i.e. the
    objective becomes :math:`F = f + \frac{\lambda}{2}\lVert\theta\rVert^2`, and the line
    search uses the same :math:`F`)::

        s_{k-1} = \theta_k - \theta_{k-1},   y_{k-1} = g_k - g_{k-1}
            (stored when \langle s, y\rangle > 0, in a ring of the last m pairs)
        \gamma_k = \langle s_{k-1}, y_{k-1}\rangle / \lVert y_{k-1}\rVert^2   (scale_init_precond;
            \min(1, 1/\lVert g_k\rVert) at k = 0 or when no new pair was stored; else 1)
        d_k = -\eta_k H_k g_k                    (two-loop recursion, H_0 = \gamma_k I)
        \theta_{k+1} = \theta_k + \alpha_k d_k   (\alpha_k from the line search, first trial 1;
                                                  \alpha_k = 1 with linesearch=None)

    The line search evaluates the objective at trial points by writing them
    into the registered ParamStates, calling ``value_fn()`` (and, for
    ``'zoom'``, differentiating it with ``brainstate.transform.grad``), and
    restoring them. So :meth:`update` takes the current loss value and the
    loss function::

        def loss_fn():                       # reads the model's ParamStates
            return jnp.mean((model(x) - y) ** 2)

        grad_fn = brainstate.transform.grad(loss_fn, opt.param_states, return_value=True)

        @brainstate.transform.jit
        def train_step():
            grads, loss = grad_fn()
            opt.update(grads, value=loss, value_fn=loss_fn)
            return loss

    ``update(grads, value=None, value_fn=None)``: ``value`` is the loss at the
    current parameters (without the L2 term; computed with ``value_fn`` if
    left out), ``value_fn`` a function of no arguments (or of the parameters,
    optax's and braintools' ``value_fn(params)``: it then receives the
    registered States' values, keyed like ``opt.param_states``) returning the scalar
    loss from the model's current ParamStates. It must be deterministic and
    free of side effects on other States (it is called several times per
    step). With ``linesearch=None`` (the default, as braintools) there is
    nothing to evaluate and both may be left out (they are accepted and not
    used). Works eagerly,
    inside ``brainstate.transform.jit`` and ``for_loop``.

    Diagnostics, as OptimizerStates: ``opt.last_stepsize`` (:math:`\alpha_k`),
    ``opt.linesearch_evals`` and the curvature weights ``opt.rho``.

    Conventions: optax ``lbfgs(learning_rate, memory_size, scale_init_precond,
    linesearch=scale_by_zoom_linesearch(20, initial_guess_strategy='one'))``:
    the same direction (including the first step :math:`\min(1, 1/\lVert g\rVert)\,g`)
    and Wolfe constants; the zoom phase differs in its interpolation (optax
    mixes cubic, quadratic and bisection steps), so the step sizes agree when
    the first trial is accepted and the iterates converge to the same points
    otherwise. optax also stores pairs with :math:`\langle s, y\rangle < 0`; we skip
    them. torch's ``LBFGS`` runs several iterations per ``step(closure)``;
    ours is one iteration per ``update``. The default has no line search, as
    braintools; optax's ``lbfgs`` searches by default: pass ``linesearch='zoom'``.

    Args:
        lr: learning rate :math:`\eta` (float or LRScheduler) scaling the direction
            before the line search (default 1.0: keep it unless ``linesearch=None``).
        memory_size: number :math:`m \ge 1` of stored pairs.
        scale_init_precond: the :math:`\gamma_k` scaling of :math:`H_0` (else :math:`H_0 = I`).
        linesearch: ``None`` (default, as braintools: step :math:`\eta_t d_k`), ``'zoom'``
            (strong Wolfe, optax's default and the robust choice) or ``'backtracking'`` (Armijo).
        max_linesearch_steps: evaluation budget of the line search.
        c1: sufficient-decrease constant, ``0 < c1 < c2``.
        c2: curvature constant, ``c2 < 1`` (zoom only; a non-default value is refused otherwise).
        weight_decay: coupled L2 coefficient :math:`\lambda` (part of the line-searched objective).
        **options: ``param_clip_value``, ``skip_nonfinite``, ``max_consecutive_skips``,
            ``schedule_per_update``, and without a line search ``grad_clip_norm``,
            ``grad_clip_value``, ``rescale_grad``, ``accumulate_steps`` (refused with a
            line search: they would make the search direction disagree with the
            objective the line search measures).

    Example:

    >>> import brainstate, jax.numpy as jnp
    >>> from braintools_optim.optimizers.lbfgs import LBFGS
    >>> w = brainstate.ParamState(jnp.array([3.0, -2.0]))
    >>> scale = jnp.array([1.0, 10.0])
    >>> loss_fn = lambda: jnp.sum(scale * (w.value - 1.0) ** 2)
    >>> opt = LBFGS(linesearch='zoom').register_trainable_weights({'w': w})
    >>> grad_fn = brainstate.transform.grad(loss_fn, opt.param_states, return_value=True)
    >>> for _ in range(8):
    ...     grads, loss = grad_fn()
    ...     opt.update(grads, value=loss, value_fn=loss_fn)
    >>> [round(x, 4) for x in w.value.tolist()]
    [1.0, 1.0]
    """

    weight_decay_mode = 'coupled'

    hyperparameters = {
        'memory_size': Hyper(checks.at_least_int(1), per_group=False),
        'scale_init_precond': Hyper(checks.boolean, per_group=False),
        'linesearch': Hyper(_check_linesearch, per_group=False),
        'max_linesearch_steps': Hyper(checks.at_least_int(1), per_group=False),
        'c1': Hyper(checks.positive, per_group=False),
        'c2': Hyper(checks.positive, per_group=False),
    }

    def __init__(self, lr=1.0, memory_size: int = 10, scale_init_precond: bool = True,
                 linesearch: Optional[str] = None, grad_clip_norm=None, grad_clip_value=None, *,
                 max_linesearch_steps: int = 20, c1: float = 1e-4, c2: float = 0.9, weight_decay: float = 0.0,
                 **options):
        super().__init__(**captured(locals()))
        if self.linesearch is not None:
            clipping = [name for name in ('grad_clip_norm', 'grad_clip_value') if self._options[name] is not None]
            if self._options['rescale_grad'] != 1.0:
                clipping.append('rescale_grad')
            if self._options['accumulate_steps'] != 1:
                clipping.append('accumulate_steps')
            if clipping:
                raise ValueError(f"{', '.join(clipping)} would make the search direction disagree with "
                                 f"the objective the line search measures (value_fn at the current "
                                 f"parameters); use them with linesearch=None")
        dtype = checks.float_dtype()
        self.rho = OptimizerState(jnp.zeros((self.memory_size,), dtype), name='LBFGS.rho')
        self.last_stepsize = OptimizerState(jnp.zeros((), dtype), name='LBFGS.last_stepsize')
        self.linesearch_evals = OptimizerState(jnp.zeros((), jnp.int32), name='LBFGS.linesearch_evals')

    @classmethod
    def validate(cls, h):
        if not h.c1 < h.c2 < 1.0:
            raise ValueError(f"the Wolfe constants need 0 < c1 < c2 < 1, got c1={h.c1!r}, c2={h.c2!r}")
        if h.linesearch is None and (h.max_linesearch_steps != 20 or h.c1 != 1e-4 or h.c2 != 0.9):
            raise ValueError("max_linesearch_steps, c1 and c2 configure the line search; "
                             "LBFGS(linesearch=None) has none")
        if h.linesearch == 'backtracking' and h.c2 != 0.9:
            raise ValueError("c2 is the curvature (Wolfe) constant of the 'zoom' line search; "
                             "'backtracking' only tests sufficient decrease (c1)")

    @staticmethod
    def build_rule(h):
        return _lbfgs_rule(h.memory_size)

    def _extra_states(self):
        return {'rho': self.rho, 'last_stepsize': self.last_stepsize, 'linesearch_evals': self.linesearch_evals}

    def register_trainable_weights(self, param_states, prefix=None):
        if len(self._registry) and self.steps_taken() > 0:
            raise RuntimeError("L-BFGS's stored curvature pairs span all registered parameters; register "
                               "every parameter before the first update, or build a new LBFGS")
        return super().register_trainable_weights(param_states, prefix)

    # ------------------------------------------------------------------ update
    def _update_arguments(self, kwargs):
        """``update(grads, value=None, value_fn=None)``; see the class docstring."""
        unknown = sorted(set(kwargs) - {'value', 'value_fn'})
        if unknown:
            raise TypeError(f"LBFGS.update got unexpected argument(s) {', '.join(unknown)}")
        value, value_fn = kwargs.get('value'), kwargs.get('value_fn')
        if self.linesearch is None:
            # without a line search there is nothing to evaluate; braintools accepted these too
            return {}, {}
        if value_fn is None:
            raise ValueError(f"LBFGS(linesearch={self.linesearch!r}) evaluates the loss at trial points: "
                             f"call update(grads, value=loss, value_fn=loss_fn), or build it with "
                             f"linesearch=None")
        if not callable(value_fn):
            raise TypeError(f"value_fn must be a function of no arguments returning the loss, got "
                            f"{type(value_fn).__name__}")
        return {'value_fn': _no_argument_form(value_fn, self)}, ({} if value is None else {'value': value})

    @classmethod
    def _fused_layout(cls, rule):
        # the direction is element-wise arithmetic plus dot products over all parameters, which flat
        # buckets serve directly (the histories are kept as (memory, bucket size))
        return 'flat'

    def _chunks(self, grads, params, lrs):
        """The step's operands per stored chunk: one per flat bucket (fused) or one per parameter.

        Returns ``(grads, params, lrs, buffers)`` as lists over all groups' chunks.
        """
        position = {i: j for j, i in enumerate(self._trainable)}
        out = ([], [], [], {name: [] for name in BUFFER_NAMES})
        for g, storage in self._storage.items():
            ids, classes = self._mult_classes(storage.members)
            member_grads = [grads[position[i]] for i in storage.members]
            member_params = [params[position[i]] for i in storage.members]
            if storage.fused:
                out[0].extend(storage.layout.pack(member_grads))
                out[1].extend(storage.layout.pack(member_params))
                chunk_classes = [classes[bucket.group] for bucket in storage.layout.buckets]
            else:
                out[0].extend(member_grads)
                out[1].extend(member_params)
                chunk_classes = [classes[k] for k in ids]
            out[2].extend(lrs[g] * lr_mult if lr_mult != 1.0 else lrs[g] for lr_mult, _ in chunk_classes)
            for name, state in storage.states.items():
                out[3][name].extend(state.value)
        return out

    def _per_parameter(self, chunks, count):
        """Chunk values (one per bucket or parameter, group after group) as one array per trainable parameter."""
        position = {i: j for j, i in enumerate(self._trainable)}
        out = [None] * len(self._trainable)
        start = 0
        for storage in self._storage.values():
            n = len(storage.layout.buckets) if storage.fused else len(storage.members)
            part = chunks[start:start + n]
            start += n
            for i, value in zip(storage.members, storage.layout.scatter(part, count) if storage.fused else part):
                out[position[i]] = value
        return out

    def _stored_from_chunks(self, buffers):
        """Chunk buffers (group after group) as the stored value of each group's States."""
        out, start = {}, 0
        for g, storage in self._storage.items():
            n = len(storage.layout.buckets) if storage.fused else len(storage.members)
            out[g] = {name: values[start:start + n] for name, values in buffers.items()}
            start += n
        return out

    def _compute_updates(self, grads, params, lrs, count, extra):
        """One L-BFGS step on the stored chunks (flat buckets or parameters): the same math either way."""
        dtype = self.rho.value.dtype
        m = self.memory_size
        k = count - 1                           # 0-based iteration
        trainable = self._trainable
        groups = [self._groups[self._membership[i]] for i in trainable]
        mults = [self._mults[i] for i in trainable]
        decays = [self._decay_for(g, mult[1]) for g, mult in zip(groups, mults)]
        chunk_grads, chunk_params, chunk_lrs, old_buffers = self._chunks(grads, params, lrs)

        # 1. the newest pair (s, y), kept if it has positive curvature
        s = [p - q for p, q in zip(chunk_params, old_buffers['prev_param'])]
        y = [g - q for g, q in zip(chunk_grads, old_buffers['prev_grad'])]
        sy = tree_dot(s, y, dtype)
        yy = tree_dot(y, y, dtype)
        valid = (k > 0) & (sy > 0.0)
        slot = (k - 1) % m
        keep = lambda x: jnp.where(valid, x, jnp.zeros_like(x))
        diff_params = [ring.at[slot].set(keep(x)) for ring, x in zip(old_buffers['diff_params'], s)]
        diff_grads = [ring.at[slot].set(keep(x)) for ring, x in zip(old_buffers['diff_grads'], y)]
        rho = self.rho.value.at[slot].set(jnp.where(valid, 1.0 / jnp.where(valid, sy, 1.0), 0.0))

        # 2. the direction
        grad_norm = jnp.sqrt(tree_dot(chunk_grads, chunk_grads, dtype))
        capped = jnp.minimum(1.0, 1.0 / grad_norm)
        if self.scale_init_precond:
            gamma = jnp.where(valid & (yy > 0.0), sy / jnp.where(yy > 0.0, yy, 1.0), capped)
        else:
            gamma = jnp.ones((), dtype)
        h_grad = two_loop(chunk_grads, diff_params, diff_grads, rho, gamma, slot, dtype)
        slope = -tree_dot(chunk_grads, h_grad, dtype)
        # a non-descent direction (numerically) falls back to the scaled gradient
        descent = slope < 0.0
        h_grad = [jnp.where(descent, h, (capped * g).astype(g.dtype)) for h, g in zip(h_grad, chunk_grads)]
        direction = self._per_parameter([-lr.astype(h.dtype) * h for h, lr in zip(h_grad, chunk_lrs)], count)

        # 3. the step size
        if self.linesearch is None:
            stepsize, evals = jnp.ones((), dtype), jnp.zeros((), jnp.int32)
        else:
            stepsize, evals = self._line_search(params, grads, direction, decays, dtype, extra)
            rho = jnp.where(stepsize > 0.0, rho, jnp.zeros_like(rho))   # failed: restart the memory

        new_params = [self._apply_delta(p, stepsize.astype(p.dtype) * d, g, lrs[g.index], mult)
                      for p, d, g, mult in zip(params, direction, groups, mults)]
        new_buffers = {'diff_params': diff_params, 'diff_grads': diff_grads, 'prev_param': chunk_params,
                       'prev_grad': chunk_grads}
        return (new_params, self._stored_from_chunks(new_buffers),
                {'rho': rho, 'last_stepsize': stepsize, 'linesearch_evals': evals})

    # ------------------------------------------------------------------ line search
    def _line_search(self, params, grads, direction, decays, dtype, extra):
        value, value_fn = extra.get('value'), extra['value_fn']
        registered = self._registry.params
        trainable = self._trainable
        handles = [registered[i].handle for i in trainable]
        originals = [handle.value for handle in handles]
        units = [_units.split(v)[1] for v in originals]
        grad_states = self.param_states

        def penalty(values):
            total = jnp.zeros((), dtype)
            for x, decay in zip(values, decays):
                if decay is not None:
                    total = total + (0.5 * decay * jnp.sum(x * x)).astype(dtype)
            return total

        def loss_value(raw):
            mantissa = jnp.asarray(_units.split(raw)[0])
            if mantissa.shape != ():
                raise ValueError(f"value_fn must return a scalar loss, got shape {mantissa.shape}")
            return mantissa.astype(dtype)

        def at_trial(alpha, with_grad):
            trial = [p + alpha.astype(p.dtype) * d for p, d in zip(params, direction)]
            for handle, x, unit in zip(handles, trial, units):
                handle.value = _units.merge(x, unit)
            if with_grad:
                grad_fn = brainstate.transform.grad(value_fn, grad_states=grad_states, return_value=True)
                trial_grads, raw = grad_fn()
                per_param = split_gradients(self._registry, trial_grads, self._frozen)
                values = self._registry.values()
                target = check_gradients(registered, values, per_param, trainable)
                mantissas = gradient_mantissas(per_param, trainable, target)
                mantissas = [g + decay.astype(g.dtype) * x if decay is not None else g
                             for g, x, decay in zip(mantissas, trial, decays)]
                result = loss_value(raw) + penalty(trial), tree_dot(mantissas, direction, dtype)
            else:
                result = loss_value(value_fn()) + penalty(trial)
            for handle, original in zip(handles, originals):
                handle.value = original
            return result

        f0 = loss_value(value_fn() if value is None else value) + penalty(params)
        g0 = tree_dot(grads, direction, dtype)
        loop = brainstate.transform.while_loop
        if self.linesearch == 'zoom':
            return zoom_linesearch(lambda a: at_trial(a, True), f0, g0, self.c1, self.c2,
                                   self.max_linesearch_steps, loop=loop)
        return backtracking_linesearch(lambda a: at_trial(a, False), f0, g0, self.c1,
                                       self.max_linesearch_steps, loop=loop)
