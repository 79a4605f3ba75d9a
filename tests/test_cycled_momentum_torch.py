"""Optimizers driven by a momentum-cycling scheduler, against torch trajectories.

Golden file: ``scripts/make_torch_golden_cycled_momentum.py`` (torch SGD / Adam /
RMSprop with OneCycleLR or CyclicLR, ``cycle_momentum=True``, float64). Our
optimizer gets the scheduler as ``lr=`` with ``schedule_per_update=True``; the
cycled value replaces SGD/RMSprop ``momentum`` and Adam ``beta1`` as in torch,
including for ``SGD(momentum=0)``, which torch then runs with momentum.
"""

import json
import os

import brainstate
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import braintools_optim as bo
from braintools_optim.schedulers import torch_options

GOLDEN = os.path.join(os.path.dirname(__file__), 'golden', 'torch_cycled_momentum.npz')
DATA = np.load(GOLDEN)
META = json.loads(DATA['meta'].tobytes().decode())

OPTIMIZERS = {
    'SGD': lambda lr, kw: bo.SGD(lr=lr, momentum=kw.get('momentum', 0.0), nesterov=kw.get('nesterov', False),
                                 schedule_per_update=True),
    'Adam': lambda lr, kw: bo.Adam(lr=lr, schedule_per_update=True),
    'RMSprop': lambda lr, kw: bo.RMSprop(lr=lr, momentum=kw['momentum'], schedule_per_update=True),
}


@pytest.mark.parametrize('name', sorted(META))
def test_cycled_momentum_matches_torch(name):
    spec = META[name]
    with jax.enable_x64(True):
        scheduler = getattr(bo, spec['scheduler'])(**spec['scheduler_kwargs'], **torch_options(spec['scheduler']))
        theta = brainstate.ParamState(jnp.asarray(DATA['init'], jnp.float64))
        opt = OPTIMIZERS[spec['optimizer']](scheduler, spec['optimizer_kwargs'])
        opt.register_trainable_weights({'theta': theta})
        curvature = jnp.asarray(DATA['curvature'])

        @brainstate.transform.jit
        def step(noise):
            opt.update({'theta': curvature * theta.value + noise})
            return theta.value

        trajectory = np.stack([np.asarray(step(jnp.asarray(n))) for n in DATA['noise']])
    np.testing.assert_allclose(trajectory, DATA[name], rtol=1e-10, atol=1e-12)
