"""Every optimizer the package exports, each built with non-trivial settings (shared by tests)."""

import braintools_optim as bo

ZOO = {
    'SGD': lambda **kw: bo.SGD(lr=0.05, momentum=0.9, dampening=0.1, weight_decay=1e-3, **kw),
    'Momentum': lambda **kw: bo.Momentum(lr=0.05, **kw),
    'MomentumNesterov': lambda **kw: bo.MomentumNesterov(lr=0.05, weight_decay=1e-3, **kw),
    'Adam': lambda **kw: bo.Adam(lr=0.05, weight_decay=1e-3, amsgrad=True, **kw),
    'AdamW': lambda **kw: bo.AdamW(lr=0.05, **kw),
    'Adadelta': lambda **kw: bo.Adadelta(rho=0.95, weight_decay=1e-3, **kw),
    'RMSprop': lambda **kw: bo.RMSprop(lr=0.05, centered=True, momentum=0.5, **kw),
    'Adagrad': lambda **kw: bo.Adagrad(lr=0.05, lr_decay=0.01, weight_decay=1e-3, **kw),
    'Adamax': lambda **kw: bo.Adamax(lr=0.05, weight_decay=1e-3, **kw),
    'Nadam': lambda **kw: bo.Nadam(lr=0.05, weight_decay=1e-3, **kw),
    'NAdamW': lambda **kw: bo.NAdamW(lr=0.05, **kw),
    'RAdam': lambda **kw: bo.RAdam(lr=0.05, weight_decay=1e-3, **kw),
    'Rprop': lambda **kw: bo.Rprop(lr=0.05, **kw),
    'Lion': lambda **kw: bo.Lion(lr=0.01, weight_decay=1e-3, **kw),
    'Yogi': lambda **kw: bo.Yogi(lr=0.05, weight_decay=1e-3, **kw),
    'AdaBelief': lambda **kw: bo.AdaBelief(lr=0.05, weight_decay=1e-3, **kw),
    'Novograd': lambda **kw: bo.Novograd(lr=0.05, weight_decay=1e-3, **kw),
    'Adan': lambda **kw: bo.Adan(lr=0.05, weight_decay=1e-3, **kw),
    'Fromage': lambda **kw: bo.Fromage(lr=0.05, **kw),
    'SM3': lambda **kw: bo.SM3(lr=0.05, weight_decay=1e-3, **kw),
    'Lamb': lambda **kw: bo.Lamb(lr=0.05, weight_decay=1e-3, **kw),
    'Lars': lambda **kw: bo.Lars(lr=0.5, weight_decay=1e-3, **kw),
    'Adafactor': lambda **kw: bo.Adafactor(lr=0.05, beta1=0.9, relative_step=False, weight_decay=1e-3, **kw),
    'Muon': lambda **kw: bo.Muon(lr=0.02, **kw),
    'ScheduleFreeSGD': lambda **kw: bo.ScheduleFreeSGD(lr=0.1, weight_decay=1e-3, **kw),
    'ScheduleFreeAdamW': lambda **kw: bo.ScheduleFreeAdamW(lr=0.01, weight_decay=1e-3, **kw),
    'Prodigy': lambda **kw: bo.Prodigy(lr=1.0, weight_decay=1e-3, **kw),
    'LBFGS': lambda **kw: bo.LBFGS(lr=0.1, linesearch=None, **kw),   # Lookahead wraps these (own tests)
}
