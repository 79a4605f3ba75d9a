"""The one registry of every optimizer the package exports (the tests' ``optim_db``).

Each :class:`OptimInfo` row holds what the generic tests need to know about one
optimizer, so that adding an optimizer is adding a row here:

* ``make(**engine_options)``: a typical, *non-trivial* instance (momentum,
  weight decay, AMSGrad, ... switched on where the algorithm has them); the
  engine options (``skip_nonfinite=True``, ``fused=False``, clipping, ...) are
  passed through. Generic tests (bad input, checkpoints, fused layouts,
  properties) build their optimizers with it and call ``update(grads)``, so
  L-BFGS is built here without a line search (its line search needs a loss
  function; the convergence suite runs both line searches).
* ``references``: which independent references the algorithm is compared with
  step by step: ``'torch'`` (stored torch.optim trajectories,
  ``tests/test_reference_torch.py``), ``'optax'`` (live optax,
  ``tests/test_reference_optax.py``), ``'formula'`` (NumPy transcriptions of a
  published update, ``tests/test_reference_formulas.py``). ``no_reference``
  would hold the documented reason for an optimizer that has none (today every
  optimizer has at least one). ``tests/test_catalog.py`` checks that these
  claims are exactly what the reference tables cover.
* ``elementwise``, ``decay`` and ``cycles_momentum``: what the class must report
  (``cls.is_elementwise()``, ``cls.weight_decay_mode``, whether a momentum-cycling
  scheduler is accepted); checked against the class, and used by the generic
  tests to pick their subjects.
* ``layout``: how ``fused=None`` stores the buffers (``cls.fused_layout()``):
  ``'flat'`` buckets, ``'stacked'`` same-shaped parameters, or
  ``'per-parameter'``; left out, it is ``'flat'`` for element-wise algorithms
  and ``'stacked'`` for the others. ``tests/test_fused.py`` checks every fused
  layout against ``fused=False``.
* ``convergence``: how the optimizer is driven on the convergence problems of
  ``tests/test_convergence.py`` (learning rate, steps, whether it needs a
  decaying schedule, L-BFGS's line-search arguments, evaluation at the
  schedule-free average); one entry per variant.
* ``aliases``: other exported names of the same class (``RMSProp``, ``NAdam``).

Lookahead is a wrapper, not an :class:`~braintools_optim.Optimizer`: its row
wraps Adam, and :func:`core` gives the optimizer that owns the step counter.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Dict, Optional, Tuple

import optax

import braintools_optim as bo

#: reference kinds: tests/test_reference_torch.py, test_reference_optax.py, test_reference_formulas.py
REFERENCE_KINDS = ('torch', 'optax', 'formula')


@dataclass(frozen=True)
class Convergence:
    """One run of the convergence suite (``tests/test_convergence.py``).

    ``build(lr, **options)`` returns the optimizer; ``lr`` is the float below,
    or, with ``decaying_lr``, a cosine schedule from it to 0 over ``steps``
    (the harness then passes ``schedule_per_update=True``).
    """

    build: Callable[..., Any]
    lr: float
    steps: int = 400
    decaying_lr: bool = False        # steps of a fixed relative/spectral/sign size settle only then
    line_search: bool = False        # update(grads, value=loss, value_fn=loss_fn)
    at_average: bool = False         # evaluate inside opt.eval_params() (schedule-free)
    variant: str = ''                # test-id suffix when an optimizer has several runs


@dataclass(frozen=True)
class OptimInfo:
    """One optimizer's row (fields explained in the module docstring)."""

    name: str
    cls: type
    make: Callable[..., Any]
    references: Tuple[str, ...]
    convergence: Tuple[Convergence, ...]
    elementwise: bool = False
    decay: Optional[str] = 'coupled'          # the class's weight_decay_mode (None: a wrapper)
    cycles_momentum: bool = False
    no_reference: Optional[str] = None
    aliases: Tuple[str, ...] = ()
    wrapper: bool = False
    layout: Optional[str] = None              # None: 'flat' if elementwise else 'stacked'

    @property
    def fused_layout(self) -> str:
        """How ``fused=None`` stores the buffers: 'flat', 'stacked' or 'per-parameter'."""
        return self.layout or ('flat' if self.elementwise else 'stacked')

    def __repr__(self) -> str:               # short ids in pytest output
        return self.name


def _plain(cls, **fixed):
    """``build(lr, **options)`` for ``cls(lr=lr, **fixed, **options)``."""
    return lambda lr, **options: cls(lr=lr, **fixed, **options)


def _lookahead_adam(lr, **options):
    return bo.Lookahead(bo.Adam(lr=lr, **options), sync_period=5, alpha=0.5)


_ENTRIES = [
    OptimInfo('SGD', bo.SGD,
              lambda **kw: bo.SGD(lr=0.05, momentum=0.9, dampening=0.1, weight_decay=1e-3, **kw),
              references=('torch', 'optax', 'formula'), elementwise=True, cycles_momentum=True,
              convergence=(Convergence(_plain(bo.SGD, momentum=0.9), lr=0.2),)),
    OptimInfo('Momentum', bo.Momentum, lambda **kw: bo.Momentum(lr=0.05, **kw),
              references=('torch',), elementwise=True, cycles_momentum=True,
              convergence=(Convergence(_plain(bo.Momentum), lr=0.2),)),
    OptimInfo('MomentumNesterov', bo.MomentumNesterov,
              lambda **kw: bo.MomentumNesterov(lr=0.05, weight_decay=1e-3, **kw),
              references=('torch',), elementwise=True, cycles_momentum=True,
              convergence=(Convergence(_plain(bo.MomentumNesterov), lr=0.2),)),
    OptimInfo('Adam', bo.Adam, lambda **kw: bo.Adam(lr=0.05, weight_decay=1e-3, amsgrad=True, **kw),
              references=('torch', 'optax', 'formula'), elementwise=True, cycles_momentum=True,
              convergence=(Convergence(_plain(bo.Adam), lr=0.05),)),
    OptimInfo('AdamW', bo.AdamW, lambda **kw: bo.AdamW(lr=0.05, **kw),
              references=('torch', 'optax'), elementwise=True, decay='decoupled', cycles_momentum=True,
              convergence=(Convergence(_plain(bo.AdamW, weight_decay=1e-4), lr=0.05),)),
    OptimInfo('Adadelta', bo.Adadelta, lambda **kw: bo.Adadelta(rho=0.95, weight_decay=1e-3, **kw),
              references=('torch', 'optax', 'formula'), elementwise=True,
              convergence=(Convergence(_plain(bo.Adadelta), lr=3.0),)),
    OptimInfo('RMSprop', bo.RMSprop, lambda **kw: bo.RMSprop(lr=0.05, centered=True, momentum=0.5, **kw),
              references=('torch', 'optax', 'formula'), elementwise=True, cycles_momentum=True,
              aliases=('RMSProp',),
              convergence=(Convergence(_plain(bo.RMSprop), lr=0.01),)),
    OptimInfo('Adagrad', bo.Adagrad, lambda **kw: bo.Adagrad(lr=0.05, lr_decay=0.01, weight_decay=1e-3, **kw),
              references=('torch',), elementwise=True,
              convergence=(Convergence(_plain(bo.Adagrad), lr=0.5),)),
    OptimInfo('Adamax', bo.Adamax, lambda **kw: bo.Adamax(lr=0.05, weight_decay=1e-3, **kw),
              references=('torch',), elementwise=True, cycles_momentum=True,
              convergence=(Convergence(_plain(bo.Adamax), lr=0.05),)),
    OptimInfo('Nadam', bo.Nadam, lambda **kw: bo.Nadam(lr=0.05, weight_decay=1e-3, **kw),
              references=('torch',), cycles_momentum=True, aliases=('NAdam',),
              convergence=(Convergence(_plain(bo.Nadam), lr=0.05),)),
    OptimInfo('NAdamW', bo.NAdamW, lambda **kw: bo.NAdamW(lr=0.05, **kw),
              references=('torch',), decay='decoupled', cycles_momentum=True,
              convergence=(Convergence(_plain(bo.NAdamW, weight_decay=1e-4), lr=0.05),)),
    OptimInfo('RAdam', bo.RAdam, lambda **kw: bo.RAdam(lr=0.05, weight_decay=1e-3, **kw),
              references=('torch', 'optax'), elementwise=True, cycles_momentum=True,
              convergence=(Convergence(_plain(bo.RAdam), lr=0.05),)),
    OptimInfo('Rprop', bo.Rprop, lambda **kw: bo.Rprop(lr=0.05, **kw),
              references=('torch', 'formula'),
              convergence=(Convergence(_plain(bo.Rprop), lr=0.01),)),
    OptimInfo('Lion', bo.Lion, lambda **kw: bo.Lion(lr=0.01, weight_decay=1e-3, **kw),
              references=('optax',), elementwise=True, decay='decoupled', cycles_momentum=True,
              # sign steps have a fixed size: they settle only with a decaying lr
              convergence=(Convergence(_plain(bo.Lion, betas=(0.9, 0.9)), lr=0.02, decaying_lr=True),)),
    OptimInfo('Yogi', bo.Yogi, lambda **kw: bo.Yogi(lr=0.05, weight_decay=1e-3, **kw),
              references=('optax',), elementwise=True, cycles_momentum=True,
              convergence=(Convergence(_plain(bo.Yogi), lr=0.05),)),
    OptimInfo('AdaBelief', bo.AdaBelief, lambda **kw: bo.AdaBelief(lr=0.05, weight_decay=1e-3, **kw),
              references=('optax',), elementwise=True, cycles_momentum=True,
              convergence=(Convergence(_plain(bo.AdaBelief), lr=0.05),)),
    OptimInfo('Novograd', bo.Novograd, lambda **kw: bo.Novograd(lr=0.05, weight_decay=1e-3, **kw),
              references=('optax',), decay='in_rule', cycles_momentum=True,
              convergence=(Convergence(_plain(bo.Novograd), lr=0.1),)),
    OptimInfo('Adan', bo.Adan, lambda **kw: bo.Adan(lr=0.05, weight_decay=1e-3, **kw),
              references=('optax',), elementwise=True, decay='decoupled', cycles_momentum=True,
              convergence=(Convergence(_plain(bo.Adan), lr=0.1),)),
    OptimInfo('Fromage', bo.Fromage, lambda **kw: bo.Fromage(lr=0.05, **kw),
              references=('optax',),
              # steps relative to max(|theta|, min_norm): min_norm lets zero-initialised parameters (the quadratic,
              # the MLP's biases) move at all, the decaying lr lets the fixed relative steps settle
              convergence=(Convergence(_plain(bo.Fromage, min_norm=0.01), lr=0.1, decaying_lr=True),)),
    OptimInfo('SM3', bo.SM3, lambda **kw: bo.SM3(lr=0.05, weight_decay=1e-3, **kw),
              references=('optax',), cycles_momentum=True,
              convergence=(Convergence(_plain(bo.SM3), lr=1.0),)),
    OptimInfo('Lamb', bo.Lamb, lambda **kw: bo.Lamb(lr=0.05, weight_decay=1e-3, **kw),
              references=('optax',), decay='in_rule', cycles_momentum=True,
              convergence=(Convergence(_plain(bo.Lamb), lr=0.02, decaying_lr=True),)),
    OptimInfo('Lars', bo.Lars, lambda **kw: bo.Lars(lr=0.5, weight_decay=1e-3, **kw),
              references=('optax',), cycles_momentum=True,
              convergence=(Convergence(_plain(bo.Lars, momentum=0.9, trust_coefficient=0.01, eps=1e-6),
                                       lr=1.0, decaying_lr=True),)),
    OptimInfo('Adafactor', bo.Adafactor,
              lambda **kw: bo.Adafactor(lr=0.05, beta1=0.9, relative_step=False, weight_decay=1e-3, **kw),
              references=('torch', 'optax'), decay='decoupled',
              convergence=(Convergence(_plain(bo.Adafactor, relative_step=False, scale_parameter=False, beta1=0.9),
                                       lr=0.1),)),
    OptimInfo('Muon', bo.Muon, lambda **kw: bo.Muon(lr=0.02, **kw),
              references=('optax',), decay='decoupled', cycles_momentum=True,
              convergence=(Convergence(_plain(bo.Muon, weight_decay=0.0), lr=0.05, decaying_lr=True),)),
    OptimInfo('ScheduleFreeSGD', bo.ScheduleFreeSGD,
              lambda **kw: bo.ScheduleFreeSGD(lr=0.1, weight_decay=1e-3, **kw),
              references=('optax',),
              convergence=(Convergence(_plain(bo.ScheduleFreeSGD, warmup_steps=10), lr=0.3, at_average=True),)),
    OptimInfo('ScheduleFreeAdamW', bo.ScheduleFreeAdamW,
              lambda **kw: bo.ScheduleFreeAdamW(lr=0.01, weight_decay=1e-3, **kw),
              references=('optax',), decay='in_rule',
              convergence=(Convergence(_plain(bo.ScheduleFreeAdamW, warmup_steps=10), lr=0.05,
                                       at_average=True),)),
    OptimInfo('Prodigy', bo.Prodigy, lambda **kw: bo.Prodigy(lr=1.0, weight_decay=1e-3, **kw),
              references=('optax',), decay='in_rule', layout='flat',
              convergence=(Convergence(_plain(bo.Prodigy), lr=1.0),)),
    OptimInfo('LBFGS', bo.LBFGS, lambda **kw: bo.LBFGS(lr=0.1, linesearch=None, **kw),
              references=('optax',), layout='flat',
              convergence=(Convergence(_plain(bo.LBFGS), lr=1.0, steps=60, line_search=True, variant='zoom'),
                           Convergence(_plain(bo.LBFGS, linesearch='backtracking', memory_size=5), lr=1.0,
                                       steps=100, line_search=True, variant='backtracking'))),
    OptimInfo('OptaxOptimizer', bo.OptaxOptimizer,
              lambda **kw: bo.OptaxOptimizer(optax.adamw(0.05, weight_decay=1e-2), weight_decay=1e-3, **kw),
              references=('optax',), layout='per-parameter',
              convergence=(Convergence(lambda lr, **o: bo.OptaxOptimizer(optax.adam(lr), **o), lr=0.05),)),
    OptimInfo('Lookahead', bo.Lookahead,
              lambda **kw: bo.Lookahead(bo.Adam(lr=0.05, weight_decay=1e-3, **kw), sync_period=3, alpha=0.5),
              references=('optax',), decay=None, wrapper=True, layout='per-parameter',
              convergence=(Convergence(_lookahead_adam, lr=0.05),)),
]

#: name -> entry, in a fixed order (the order of the table above)
OPTIM_DB: Dict[str, OptimInfo] = {info.name: info for info in _ENTRIES}
assert len(OPTIM_DB) == len(_ENTRIES), 'duplicate registry names'

#: every optimizer entry / the element-wise ones / the per-tensor or global ones
ALL = list(OPTIM_DB.values())
ELEMENTWISE = [info for info in ALL if info.elementwise]
NOT_ELEMENTWISE = [info for info in ALL if not info.elementwise]
#: entries that are Optimizer subclasses (Lookahead is a wrapper around one)
OPTIMIZERS = [info for info in ALL if not info.wrapper]
#: optimizers whose default layout fuses parameters (flat buckets or stacks) / stacks them
FUSED = [info for info in OPTIMIZERS if info.fused_layout != 'per-parameter']
STACKED = [info for info in OPTIMIZERS if info.fused_layout == 'stacked']


def names(infos) -> list:
    """Test ids for a list of entries."""
    return [info.name for info in infos]


def core(opt):
    """The :class:`~braintools_optim.Optimizer` that owns the step counter (a wrapper's inner one)."""
    while isinstance(opt, bo.Lookahead):
        opt = opt.inner_optimizer
    return opt


def canonical(name: str) -> str:
    """The registry name of an exported optimizer name (aliases such as ``RMSProp`` included)."""
    for info in ALL:
        if name == info.name or name in info.aliases:
            return info.name
    raise KeyError(name)
