"""braintools.optim users change one import: same optimizer names, positional order and defaults.

``BRAINTOOLS_SIGNATURES`` records the constructor signatures of braintools.optim
0.3 and 0.4 (identical for optimizers): every positional-or-keyword parameter,
in order, with its default. Ours must take the same positional parameters in
the same order with the same defaults; our own extras are keyword-only.
Differences are allowed only where ``DELIBERATE`` lists them, with the reason.
When braintools is installed (``pip install -e ".[compat]"``) the table is also
checked against its live classes, so it cannot go stale silently.
"""

import inspect

import pytest

import braintools_optim as bo

REQUIRED = inspect.Parameter.empty

BRAINTOOLS_SIGNATURES = {
    'OptaxOptimizer': [('tx', None), ('lr', 0.001), ('weight_decay', 0.0), ('grad_clip_norm', None), ('grad_clip_value', None)],
    'SGD': [('lr', 0.001), ('momentum', 0.0), ('weight_decay', 0.0), ('nesterov', False), ('grad_clip_norm', None), ('grad_clip_value', None)],
    'Momentum': [('lr', 0.001), ('momentum', 0.9), ('weight_decay', 0.0), ('grad_clip_norm', None), ('grad_clip_value', None)],
    'MomentumNesterov': [('lr', 0.001), ('momentum', 0.9), ('weight_decay', 0.0), ('grad_clip_norm', None), ('grad_clip_value', None)],
    'Adam': [('lr', 0.001), ('betas', (0.9, 0.999)), ('beta1', None), ('beta2', None), ('eps', 1e-08), ('weight_decay', 0.0), ('amsgrad', False), ('grad_clip_norm', None), ('grad_clip_value', None)],
    'AdamW': [('lr', 0.001), ('betas', (0.9, 0.999)), ('eps', 1e-08), ('weight_decay', 0.01), ('grad_clip_norm', None), ('grad_clip_value', None)],
    'Adagrad': [('lr', 0.01), ('lr_decay', 0.0), ('weight_decay', 0.0), ('initial_accumulator_value', 0.0), ('eps', 1e-10), ('grad_clip_norm', None), ('grad_clip_value', None)],
    'Adadelta': [('lr', 1.0), ('rho', 0.9), ('eps', 1e-06), ('weight_decay', 0.0), ('grad_clip_norm', None), ('grad_clip_value', None)],
    'RMSprop': [('lr', 0.01), ('alpha', 0.99), ('eps', 1e-08), ('weight_decay', 0.0), ('momentum', 0.0), ('centered', False), ('grad_clip_norm', None), ('grad_clip_value', None)],
    'Adamax': [('lr', 0.002), ('betas', (0.9, 0.999)), ('eps', 1e-08), ('weight_decay', 0.0), ('grad_clip_norm', None), ('grad_clip_value', None)],
    'Nadam': [('lr', 0.002), ('betas', (0.9, 0.999)), ('eps', 1e-08), ('weight_decay', 0.0), ('momentum_decay', 0.004), ('grad_clip_norm', None), ('grad_clip_value', None)],
    'RAdam': [('lr', 0.001), ('betas', (0.9, 0.999)), ('eps', 1e-08), ('weight_decay', 0.0), ('grad_clip_norm', None), ('grad_clip_value', None)],
    'Lamb': [('lr', 0.001), ('betas', (0.9, 0.999)), ('eps', 1e-06), ('weight_decay', 0.0), ('grad_clip_norm', None), ('grad_clip_value', None)],
    'Lars': [('lr', 1.0), ('momentum', 0.9), ('weight_decay', 0.0), ('trust_coefficient', 0.001), ('eps', 1e-08), ('grad_clip_norm', None), ('grad_clip_value', None)],
    'Lookahead': [('base_optimizer', REQUIRED), ('sync_period', 5), ('alpha', 0.5), ('lr', 0.001), ('weight_decay', 0.0), ('grad_clip_norm', None), ('grad_clip_value', None)],
    'Yogi': [('lr', 0.001), ('betas', (0.9, 0.999)), ('eps', 0.001), ('weight_decay', 0.0), ('grad_clip_norm', None), ('grad_clip_value', None)],
    'LBFGS': [('lr', 1.0), ('memory_size', 10), ('scale_init_precond', True), ('linesearch', None), ('grad_clip_norm', None), ('grad_clip_value', None)],
    'Rprop': [('lr', 0.01), ('etas', (0.5, 1.2)), ('step_sizes', (1e-06, 50.0)), ('grad_clip_norm', None), ('grad_clip_value', None)],
    'Adafactor': [('lr', None), ('eps', (1e-30, 0.001)), ('clip_threshold', 1.0), ('decay_rate', 0.8), ('beta1', None), ('weight_decay', 0.0), ('factored', True), ('grad_clip_norm', None), ('grad_clip_value', None)],
    'AdaBelief': [('lr', 0.001), ('betas', (0.9, 0.999)), ('eps', 1e-16), ('weight_decay', 0.0), ('grad_clip_norm', None), ('grad_clip_value', None)],
    'Lion': [('lr', 0.0001), ('betas', (0.9, 0.99)), ('weight_decay', 0.0), ('grad_clip_norm', None), ('grad_clip_value', None)],
    'SM3': [('lr', 1.0), ('momentum', 0.9), ('eps', 1e-08), ('weight_decay', 0.0), ('grad_clip_norm', None), ('grad_clip_value', None)],
    'Novograd': [('lr', 0.001), ('betas', (0.9, 0.999)), ('eps', 1e-08), ('weight_decay', 0.0), ('grad_clip_norm', None), ('grad_clip_value', None)],
    'Fromage': [('lr', 1.0), ('momentum', 0.0), ('grad_clip_norm', None), ('grad_clip_value', None)],
}

#: (class, argument) -> why our default differs from braintools'
DELIBERATE = {
    ('OptaxOptimizer', 'lr'): "None: 1e-3 for tx=None (as braintools); with a transformation, lr multiplies its "
                              "update and defaults to 1.0 (braintools ignored lr there, reporting an lr it "
                              "never applied)",
    ('Lookahead', 'lr'): "None: the inner optimizer's own (braintools reported 1e-3 but never applied it to an "
                         "optax transformation)",
    ('Lookahead', 'weight_decay'): "None: the inner optimizer's own",
}


def _positional(cls):
    return [(name, p.default) for name, p in inspect.signature(cls.__init__).parameters.items()
            if name != 'self' and p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD]


@pytest.mark.parametrize('name', sorted(BRAINTOOLS_SIGNATURES))
def test_positional_order_names_and_defaults_match_braintools(name):
    ours = _positional(getattr(bo, name))
    theirs = BRAINTOOLS_SIGNATURES[name]
    assert [n for n, _ in ours] == [n for n, _ in theirs], f"{name}: positional order differs"
    for (arg, mine), (_, expected) in zip(ours, theirs):
        if (name, arg) in DELIBERATE:
            assert mine != expected, f"{name}.{arg} is listed as deliberate but now equals braintools"
            continue
        assert mine == expected, f"{name}({arg}=...) default {mine!r}, braintools {expected!r}"


@pytest.mark.parametrize('name', sorted(BRAINTOOLS_SIGNATURES))
def test_every_other_argument_is_keyword_only(name):
    kinds = {p.kind for n, p in inspect.signature(getattr(bo, name).__init__).parameters.items() if n != 'self'}
    assert inspect.Parameter.VAR_POSITIONAL not in kinds


def test_the_table_matches_installed_braintools():
    optim = pytest.importorskip('braintools.optim')
    if getattr(optim, '__file__', '').startswith(bo.__path__[0]):
        pytest.skip('braintools.optim is aliased to this package')
    for name, expected in BRAINTOOLS_SIGNATURES.items():
        assert _positional(getattr(optim, name)) == expected, name


def test_positional_calls_mean_what_they_mean_in_braintools():
    # the silent trap of the first release: SGD(lr, momentum, weight_decay, nesterov)
    opt = bo.SGD(0.1, 0.9, 1e-4)
    assert (opt.momentum, opt.weight_decay, opt.nesterov) == (0.9, pytest.approx(1e-4), False)
    with pytest.warns(FutureWarning, match='betas'):
        opt = bo.Adam(1e-3, (0.9, 0.999), 0.95)          # braintools: the third is beta1
    assert opt.betas == (0.95, 0.999)
