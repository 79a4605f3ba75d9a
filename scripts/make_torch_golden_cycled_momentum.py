"""Golden trajectories: optimizers driven by a momentum-cycling torch scheduler.

torch's OneCycleLR / CyclicLR (``cycle_momentum=True``) rewrite each step the
SGD ``momentum`` or Adam ``betas[0]`` of the optimizer's param_groups; these
trajectories check that ``bo.SGD(lr=OneCycleLR(...))`` etc. feed the cycled
value into the update exactly where torch does.

Regenerate (needs ``pip install torch==2.13.0``; the tests do not)::

    python scripts/make_torch_golden_cycled_momentum.py
"""

import json
import os

import numpy as np
import torch

STEPS = 30
OUT = os.path.join(os.path.dirname(__file__), '..', 'tests', 'golden', 'torch_cycled_momentum.npz')

CASES = {
    # name: (optimizer, optimizer kwargs, scheduler, scheduler kwargs)
    'sgd_momentum_onecycle': ('SGD', {'lr': 0.1, 'momentum': 0.9}, 'OneCycleLR',
                              {'max_lr': 0.1, 'total_steps': STEPS}),
    'sgd_nesterov_onecycle_linear': ('SGD', {'lr': 0.1, 'momentum': 0.9, 'nesterov': True}, 'OneCycleLR',
                                     {'max_lr': 0.05, 'total_steps': STEPS, 'anneal_strategy': 'linear'}),
    'sgd_plain_onecycle': ('SGD', {'lr': 0.1}, 'OneCycleLR', {'max_lr': 0.1, 'total_steps': STEPS}),
    'sgd_cyclic_triangular2': ('SGD', {'lr': 0.1, 'momentum': 0.9}, 'CyclicLR',
                               {'base_lr': 0.01, 'max_lr': 0.1, 'step_size_up': 4, 'mode': 'triangular2'}),
    'adam_onecycle': ('Adam', {'lr': 0.01}, 'OneCycleLR', {'max_lr': 0.05, 'total_steps': STEPS}),
    'rmsprop_momentum_onecycle': ('RMSprop', {'lr': 0.01, 'momentum': 0.5}, 'OneCycleLR',
                                  {'max_lr': 0.01, 'total_steps': STEPS}),
}


def main():
    rng = np.random.default_rng(7)
    init = rng.normal(size=(3, 4))
    curvature = rng.uniform(0.5, 3.0, size=(3, 4))
    noise = rng.normal(scale=0.1, size=(STEPS, 3, 4))
    arrays = {'init': init, 'curvature': curvature, 'noise': noise}
    meta = {}
    for name, (opt_name, opt_kwargs, sched_name, sched_kwargs) in CASES.items():
        theta = torch.tensor(init, dtype=torch.float64, requires_grad=True)
        opt = getattr(torch.optim, opt_name)([theta], **opt_kwargs)
        sched = getattr(torch.optim.lr_scheduler, sched_name)(opt, **sched_kwargs)
        trajectory = []
        for t in range(STEPS):
            theta.grad = torch.tensor(curvature) * theta.detach() + torch.tensor(noise[t])
            opt.step()
            sched.step()
            trajectory.append(theta.detach().numpy().copy())
        arrays[name] = np.stack(trajectory)
        meta[name] = {'optimizer': opt_name, 'optimizer_kwargs': opt_kwargs,
                      'scheduler': sched_name, 'scheduler_kwargs': sched_kwargs}
    arrays['meta'] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    np.savez(OUT, **arrays)
    print(f"wrote {OUT}")


if __name__ == '__main__':
    main()
