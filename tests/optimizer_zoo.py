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
}
