"""UniqueStateManager: deduplication by identity, path formats, errors, and use with our optimizers."""

import collections

import brainstate
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.tree_util import DictKey, GetAttrKey, SequenceKey

import braintools_optim as bo
from braintools_optim.unique_states import UniqueStateManager


def param(*shape, fill=1.0):
    return brainstate.ParamState(jnp.full(shape or (1,), fill))


def is_state(x):
    return isinstance(x, brainstate.State)


def snapshot(usm):
    """Everything observable about a manager, for 'nothing changed' checks."""
    return ([(p, id(s)) for p, s in usm.get_flattened()], usm.seen_ids, usm.pytree_structure)


# ------------------------------------------------------------------------------- empty manager

def test_empty_manager_gives_empty_results():
    usm = UniqueStateManager()
    assert len(usm) == 0 and usm.num_unique_states == 0
    assert usm.to_pytree() == {} and usm.to_pytree_value() == {}
    assert usm.to_dict() == {} and usm.to_dict_value() == {}
    assert usm.get_flattened() == [] and usm.unique_paths == [] and usm.unique_states == []
    assert usm.seen_ids == set() and usm.pytree_structure is None
    assert usm.make_unique({}) == {}
    assert UniqueStateManager({'a': {}, 'b': [], 'c': None}).to_pytree() == {}


# ------------------------------------------------------------------------------- which occurrence wins

def test_first_occurrence_in_flattening_order_wins():
    shared, other = param(2), param(3)
    # jax sorts dict keys: 'a' comes before 'z', whatever the insertion order
    usm = UniqueStateManager({'z': shared, 'a': {'inner': shared}, 'm': other})
    assert len(usm) == 2
    assert usm.unique_paths == [(DictKey('a'), DictKey('inner')), (DictKey('m'),)]
    assert usm.unique_states[0] is shared and usm.unique_states[1] is other
    assert list(usm.to_dict()) == ['a.inner', 'm']
    assert usm.seen_ids == {id(shared), id(other)}


def test_duplicates_inside_a_list_keep_the_first_position():
    s, t = param(1), param(2)
    usm = UniqueStateManager({'layers': [s, t, s, t]})
    assert [p for p, _ in usm.get_flattened()] == [(DictKey('layers'), SequenceKey(0)),
                                                   (DictKey('layers'), SequenceKey(1))]
    assert usm.to_pytree() == {'layers': {0: s, 1: t}}


def test_a_hundred_references_to_one_state_count_once():
    s = param(5, 5)
    usm = UniqueStateManager({f'ref_{i:03d}': s for i in range(100)})
    assert len(usm) == 1 and list(usm.to_dict()) == ['ref_000']


def test_equal_values_are_not_duplicates():
    # identity, not equality, decides
    a, b = param(2), param(2)
    assert len(UniqueStateManager({'a': a, 'b': b})) == 2


# ------------------------------------------------------------------------------- to_pytree

def test_to_pytree_nests_dicts_and_turns_positions_into_int_keys():
    w, b, e, f = param(2), param(3), param(4), param(5)
    tree = {'enc': {'w': w, 'b': b}, 'blocks': [{'w': e}, (f, w)], 'empty': {}}
    usm = UniqueStateManager(tree)
    got = usm.to_pytree()
    assert got == {'blocks': {0: {'w': e}, 1: {0: f, 1: w}}, 'enc': {'b': b}}
    assert got['blocks'][1][1] is w                  # 'blocks' sorts before 'enc': w kept there
    assert len(jax.tree.leaves(got, is_leaf=is_state)) == len(usm) == 4


def test_to_pytree_keeps_brainstate_tuple_keys():
    model = brainstate.nn.Sequential(brainstate.nn.Linear(2, 3), brainstate.nn.Linear(3, 1))
    states = model.states(brainstate.ParamState)
    usm = UniqueStateManager(states)
    got = usm.to_pytree()
    assert list(got) == list(states.keys()) == [('layers', 0, 'weight'), ('layers', 1, 'weight')]
    assert all(got[k] is states[k] for k in got)
    assert usm.unique_paths == [(DictKey(k),) for k in states.keys()]


def test_to_pytree_of_a_single_state_is_that_state():
    s = param(3)
    usm = UniqueStateManager(s)
    assert usm.to_pytree() is s and usm.make_unique(s) is s
    np.testing.assert_array_equal(usm.to_pytree_value(), jnp.ones(3))
    assert usm.to_dict() == {'': s} and usm.unique_paths == [()]


def test_named_tuple_fields_are_keyed_by_name():
    Pair = collections.namedtuple('Pair', 'x y')
    x, y = param(1), param(2)
    usm = UniqueStateManager({'pair': Pair(x, y)})
    assert usm.unique_paths[0] == (DictKey('pair'), GetAttrKey('x'))
    assert usm.to_pytree() == {'pair': {'x': x, 'y': y}}
    assert list(usm.to_dict()) == ['pair.x', 'pair.y']


def test_to_pytree_returns_a_fresh_tree_each_time():
    s = param(1)
    usm = UniqueStateManager({'a': {'b': s}})
    first = usm.to_pytree()
    first['a']['c'] = param(1)
    assert usm.to_pytree() == {'a': {'b': s}}


def test_values_are_read_when_asked_for():
    s = param(2)
    usm = UniqueStateManager({'layer': {'w': s}})
    s.value = jnp.array([3.0, 4.0])
    np.testing.assert_array_equal(usm.to_pytree_value()['layer']['w'], [3.0, 4.0])
    np.testing.assert_array_equal(usm.to_dict_value()['layer.w'], [3.0, 4.0])


def test_state_holding_a_pytree_is_one_leaf():
    s = brainstate.ParamState({'weight': jnp.ones((2, 2)), 'bias': jnp.zeros(2)})
    usm = UniqueStateManager({'dense': s})
    assert len(usm) == 1 and usm.to_pytree() == {'dense': s}
    assert set(usm.to_pytree_value()['dense']) == {'weight', 'bias'}


# ------------------------------------------------------------------------------- to_dict

@pytest.mark.parametrize('tree, keys', [
    ({'a': {'b': {'c': 0}}}, ['a.b.c']),
    ({'blocks': [{'w': 0}, {'w': 1}]}, ['blocks[0].w', 'blocks[1].w']),
    ({'x': [[0]]}, ['x[0][0]']),
    ([0, {'k': 1}], ['[0]', '[1].k']),
    ({3: 0, 10: 1}, ['3', '10']),
    ({('l1', 'weight'): 0, ('l2', 'bias'): 1}, ["('l1', 'weight')", "('l2', 'bias')"]),
    ({'a': {'[x]': 0}}, ['a.[x]']),
])
def test_to_dict_key_format(tree, keys):
    states = [param(1) for _ in range(4)]
    tree = jax.tree.map(lambda i: states[i], tree)
    usm = UniqueStateManager(tree)
    got = usm.to_dict()
    assert list(got) == keys
    assert [got[k] for k in keys] == usm.unique_states
    assert [usm._path_to_string(p) for p in usm.unique_paths] == keys


def test_to_dict_refuses_two_paths_with_one_string():
    a, b = param(1), param(2)
    usm = UniqueStateManager({'a.b': a, 'a': {'b': b}})       # both spell 'a.b'
    assert len(usm) == 2 and usm.to_pytree() == {'a': {'b': b}, 'a.b': a}
    for method in (usm.to_dict, usm.to_dict_value):
        with pytest.raises(ValueError, match=r"both have the string key 'a.b'"):
            method()
    with pytest.raises(ValueError, match='names more than one State'):
        usm.get_state_by_path('a.b')
    assert usm.get_state_by_path((DictKey('a.b'),)) is a


# ------------------------------------------------------------------------------- bad leaves

@pytest.mark.parametrize('bad, where', [
    ({'w': param(1), 'raw': jnp.ones(2)}, "path 'raw'"),
    ({'layers': [param(1), 0.5]}, r"path 'layers\[1\]'"),
    (np.ones(3), 'the root of the pytree'),
])
def test_non_state_leaves_are_refused_and_change_nothing(bad, where):
    kept = param(4)
    usm = UniqueStateManager({'kept': kept})
    before = snapshot(usm)
    for call in (usm.make_unique, usm.merge_with, UniqueStateManager):
        with pytest.raises(TypeError, match=f'leaf at {where} is of type'):
            call(bad)
        assert snapshot(usm) == before


# ------------------------------------------------------------------------------- make_unique / merge_with

def test_make_unique_replaces_everything_and_records_the_structure():
    a, b = param(1), param(2)
    usm = UniqueStateManager({'a': a})
    tree = {'b': [b, b]}
    result = usm.make_unique(tree)
    assert result == {'b': {0: b}} and usm.unique_states == [b]
    assert usm.seen_ids == {id(b)}
    assert usm.pytree_structure == jax.tree.structure(tree, is_leaf=is_state)


def test_merge_with_appends_unseen_states_and_returns_self():
    a, b, c = param(1), param(2), param(3)
    usm = UniqueStateManager({'z': a})
    structure = usm.pytree_structure
    assert usm.merge_with({'y': b, 'again': a}).merge_with({'x': [c, b]}) is usm
    assert list(usm.to_dict()) == ['z', 'y', 'x[0]']          # holding order, not sorted
    assert usm.unique_states == [a, b, c]
    assert usm.pytree_structure is structure                  # only make_unique records one
    assert UniqueStateManager().merge_with({'a': a}).pytree_structure is None
    assert len(usm.merge_with({})) == 3


@pytest.mark.parametrize('held, new, new_at, held_at', [
    ({'w': 0}, {'w': 1}, "path 'w'", "path 'w'"),                         # same path
    ({'w': 0}, {'w': {'x': 1}}, "path 'w.x'", "path 'w'"),                # below a held State
    ({'w': {'x': 0}}, {'w': 1}, "path 'w'", "path 'w.x'"),                # above a held State
    ({'w': [0]}, {'w': {0: 1}}, r"path 'w.0'", r"path 'w\[0\]'"),         # same key, other container
    (0, {'w': 1}, "path 'w'", 'the root of the pytree'),
    ({('weight',): 0}, {('weight',): 1}, r"path \"\('weight',\)\"", r"path \"\('weight',\)\""),
])
def test_merge_refuses_a_path_clash_and_changes_nothing(held, new, new_at, held_at):
    first, second = param(1), param(2)
    usm = UniqueStateManager(jax.tree.map(lambda i: (first, second)[i], held))
    before = snapshot(usm)
    new = jax.tree.map(lambda i: (first, second)[i], new)
    with pytest.raises(ValueError, match=f'State at {new_at} clashes with the State already held at {held_at}'):
        usm.merge_with(new)
    assert snapshot(usm) == before


def test_two_modules_keyed_alike_merge_under_names_of_their_own():
    enc, dec = brainstate.nn.Linear(2, 2), brainstate.nn.Linear(2, 2)
    usm = UniqueStateManager(enc.states(brainstate.ParamState))
    with pytest.raises(ValueError, match='clashes'):
        usm.merge_with(dec.states(brainstate.ParamState))      # both ('weight',)
    usm.merge_with({'dec': dec.states(brainstate.ParamState)})
    assert len(usm) == 2 and list(usm.to_dict()) == ["('weight',)", "dec.('weight',)"]


def test_remerging_the_same_tree_is_a_no_op():
    model = brainstate.nn.Linear(3, 2)
    usm = UniqueStateManager(model.states(brainstate.ParamState))
    before = snapshot(usm)
    usm.merge_with(model.states(brainstate.ParamState))
    assert snapshot(usm) == before


# ------------------------------------------------------------------------------- lookup and update

def test_get_state_by_path_takes_a_key_path_or_a_dict_key():
    w, b = param(1), param(2)
    usm = UniqueStateManager({'layer': {'w': w, 'b': [b]}})
    assert usm.get_state_by_path((DictKey('layer'), DictKey('w'))) is w
    assert usm.get_state_by_path('layer.b[0]') is b
    for missing in ('layer', 'layer.x', ('layer', 'w'), (('layer',),), 7):
        assert usm.get_state_by_path(missing) is None


def test_update_state_swaps_one_state():
    old, other = param(3), param(4)
    usm = UniqueStateManager({'w': old, 'v': other})
    new = param(3, fill=2.0)
    assert usm.update_state((DictKey('w'),), new) is True
    assert usm.get_state_by_path('w') is new
    assert usm.unique_paths == [(DictKey('v'),), (DictKey('w'),)]       # path and place unchanged
    assert usm.seen_ids == {id(other), id(new)}
    np.testing.assert_array_equal(usm.to_dict_value()['w'], jnp.full(3, 2.0))
    assert usm.update_state('w', new) is True and usm.unique_states == [other, new]
    # the State swapped out is no longer held: merging it again adds it (at a free path)
    usm.merge_with({'old': old})
    assert usm.get_state_by_path('old') is old and len(usm) == 3


def test_update_state_with_an_unknown_path_returns_false():
    usm = UniqueStateManager({'w': param(1)})
    before = snapshot(usm)
    assert usm.update_state('nowhere', param(1)) is False
    assert usm.update_state((DictKey('nowhere'),), param(1)) is False
    assert snapshot(usm) == before


def test_update_state_refuses_a_non_state_or_a_state_held_elsewhere():
    a, b = param(1), param(2)
    usm = UniqueStateManager({'a': a, 'b': b})
    before = snapshot(usm)
    with pytest.raises(TypeError, match='new_state must be a brainstate State, got float'):
        usm.update_state('a', 3.0)
    with pytest.raises(ValueError, match="already held at path 'b'; holding it at path 'a' too"):
        usm.update_state('a', b)
    assert snapshot(usm) == before


# ------------------------------------------------------------------------------- bookkeeping

def test_clear_forgets_everything_and_the_manager_is_reusable():
    a, b = param(1), param(2)
    usm = UniqueStateManager({'a': a})
    usm.clear()
    assert len(usm) == 0 and usm.seen_ids == set() and usm.pytree_structure is None and usm.to_dict() == {}
    usm.merge_with({'a': b})                          # the old path is free again
    assert usm.unique_states == [b]


def test_views_are_copies_and_read_only():
    a = param(1)
    usm = UniqueStateManager({'a': a})
    for view in (usm.unique_states, usm.unique_paths, usm.flattened_states, usm.get_flattened()):
        view.clear()
    usm.seen_ids.clear()
    assert len(usm) == 1 and usm.seen_ids == {id(a)} and usm.flattened_states == [((DictKey('a'),), a)]
    with pytest.raises(AttributeError):
        usm.unique_states = []


def test_repr_names_the_count_and_first_keys():
    usm = UniqueStateManager({f'k{i}': param(1) for i in range(6)})
    assert repr(usm) == "UniqueStateManager(6 states: 'k0', 'k1', 'k2', 'k3', ...)"


# ------------------------------------------------------------------------------- with brainstate and our optimizer

class TiedNet(brainstate.nn.Module):
    """An embedding whose matrix is reused, transposed, as the output layer."""

    def __init__(self):
        super().__init__()
        self.embed = brainstate.ParamState(jnp.arange(6.0).reshape(3, 2) / 10)
        self.hidden = brainstate.nn.Linear(2, 2)

    def __call__(self, x):
        h = jnp.tanh(self.hidden(x @ self.embed.value))
        return h @ self.embed.value.T


def tied_loss(net):
    x = jnp.eye(3)
    return lambda: jnp.sum((net(x) - x) ** 2)


def test_optimizer_trains_each_tied_state_once():
    net = TiedNet()
    tree = {'input': {'embed': net.embed}, 'output': {'embed': net.embed}, 'hidden': net.hidden.weight}
    usm = UniqueStateManager(tree)
    flat = usm.to_dict()                              # our optimizer takes flat dicts
    assert list(flat) == ['hidden', 'input.embed']
    opt = bo.SGD(lr=0.1).register_trainable_weights(flat)
    assert list(opt.param_states) == ['hidden', 'input.embed']
    before = usm.to_dict_value()
    grads = brainstate.transform.grad(tied_loss(net), opt.param_states)()
    opt.update(grads)
    # one SGD step, not two: the shared matrix moved by exactly lr * its (full) gradient (to float32
    # rounding of the operands, about 1e-8 here: an entry where p and lr*g nearly cancel has no relative
    # precision left; a second step would move it by another lr*g, about 0.1)
    np.testing.assert_allclose(net.embed.value, before['input.embed'] - 0.1 * grads['input.embed'],
                               rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(net.hidden.weight.value['bias'],
                               before['hidden']['bias'] - 0.1 * grads['hidden']['bias'], rtol=1e-6, atol=1e-7)


def test_module_states_through_to_pytree_train_under_jit():
    model = brainstate.nn.Sequential(brainstate.nn.Linear(3, 4), brainstate.nn.Linear(4, 1))
    params = UniqueStateManager(model.states(brainstate.ParamState)).to_pytree()
    opt = bo.Adam(lr=1e-2).register_trainable_weights(params)
    assert {k[:3] for k in opt.param_states} == set(params)        # keys kept as to_pytree gives them
    x = jnp.linspace(-1.0, 1.0, 12).reshape(4, 3)
    y = jnp.sum(x, axis=1, keepdims=True)
    loss_fn = lambda: jnp.mean((model(x) - y) ** 2)

    @brainstate.transform.jit
    def step():
        grads, loss = brainstate.transform.grad(loss_fn, opt.param_states, return_value=True)()
        opt.update(grads)
        return loss

    first = float(step())
    for _ in range(30):
        last = float(step())
    assert last < 0.5 * first


def test_grad_over_a_nested_to_pytree_is_keyed_like_it():
    net = TiedNet()
    usm = UniqueStateManager({'a': {'embed': net.embed, 'tied': [net.embed]}, 'h': net.hidden.weight})
    tree = usm.to_pytree()
    grads = brainstate.transform.grad(tied_loss(net), tree)()
    assert jax.tree.structure(grads) == jax.tree.structure(usm.to_pytree_value())
    assert set(grads) == {'a', 'h'} and set(grads['a']) == {'embed'}
    # the single leaf for the shared matrix carries both uses' contributions
    full = jax.grad(lambda e: jnp.sum((jnp.tanh(jnp.eye(3) @ e @ net.hidden.weight.value['weight']
                                                + net.hidden.weight.value['bias']) @ e.T - jnp.eye(3)) ** 2))
    np.testing.assert_allclose(grads['a']['embed'], full(net.embed.value), rtol=1e-5)


# ------------------------------------------------------------------------------- same results as braintools

def test_matches_braintools_on_ordinary_trees():
    theirs = pytest.importorskip('braintools.optim').UniqueStateManager
    a, b, c = param(1), param(2), param(3)
    model = brainstate.nn.Sequential(brainstate.nn.Linear(2, 3), brainstate.nn.Linear(3, 1))
    for tree in ({'b': a, 'a': {'x': a, 'y': [b, (c, a)]}}, [a, {'k': b}], {0: c, 1: a},
                 model.states(brainstate.ParamState)):
        ours, ref = UniqueStateManager(tree), theirs(tree)
        assert ours.unique_paths == ref.unique_paths
        assert list(ours.to_dict()) == list(ref.to_dict())
        assert all(x is y for x, y in zip(ours.unique_states, ref.unique_states))
        assert ours.to_pytree() == ref.to_pytree()
        extra = param(1)
        ours.merge_with({'z': extra})
        ref.merge_with({'z': extra})
        assert list(ours.to_dict()) == list(ref.to_dict())
