"""The base class of every layer: the layer tree and the forward/backward contract.

Writing a layer (see docs/layers.md, "Writing your own layer"):

* ``forward(x)`` computes the output and keeps what backward needs with
  ``self.save_for_backward(...)``;
* ``backward(grad)`` takes them back with ``self.saved_tensors()``, *adds*
  into its parameters' ``grad`` (``Parameter.accumulate``) and returns the
  gradient with respect to ``x``. That is the one method to write. A layer
  whose input gradient costs work of its own (``Linear``: a matrix product)
  may take the keyword ``backward(grad, *, input_grad=True)`` and skip it
  when called with ``input_grad=False`` (the first layer of a network needs
  none); callers may pass ``input_grad=False`` to any layer, and get ``None``;
* parameters are :class:`Parameter` attributes, non-trainable arrays
  (running statistics) are attributes named in ``buffer_names``, a host
  generator for random draws is the attribute ``rng``, and sub-layers are
  :class:`Layer` attributes, or :class:`~nnx.LayerList` / :class:`~nnx.LayerDict`
  ones for several (a plain list, tuple or dict of layers is refused with
  :class:`~nnx.errors.LayerTreeError`: the tree walk would not find them).
  ``config()`` returns the constructor arguments.

The base class checks every incoming gradient against the output of the
forward before it (backend, dtype and shape), and a backward without a
forward before it, or a second one, raises :class:`~nnx.errors.StateError`.
Everything that concerns the whole tree (parameters, buffers, modes,
``to()``, state dicts, random states, summaries) is implemented here once,
from :meth:`Layer.named_children`; containers only wire their children.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import json
from typing import Any, Callable, ClassVar, Iterator, Mapping

from nnx import backend as _backend
from nnx import random as _random
from nnx.errors import BackendMismatchError, DTypeError, LayerTreeError, NonFiniteError, ShapeError, StateError
from nnx.layers.checks import check_float, check_same_dtype


class Parameter:
    """A trainable array and its accumulated gradient (``None`` until a backward)."""

    __slots__ = ("data", "grad", "name")

    def __init__(self, data: Any, name: str) -> None:
        self.data = data
        self.grad: Any = None
        self.name = name

    def accumulate(self, grad: Any) -> None:
        """Add ``grad`` into this parameter's gradient; it must have the parameter's shape (a gradient
        still holding the batch axis, or broadcast against it, would reach the optimizer wrong)."""
        if tuple(getattr(grad, "shape", ())) != tuple(self.data.shape):
            raise ShapeError(f"{self!r}: a gradient of shape {tuple(getattr(grad, 'shape', ()))} cannot be added "
                             f"into a parameter of shape {tuple(self.data.shape)}; the layer's backward must "
                             f"reduce it to the parameter's shape (sum over the batch axis, as xp.sum(g, axis=0))")
        if self.grad is None:
            self.grad = grad
        else:
            self.grad += grad

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.data.shape)

    @property
    def size(self) -> int:
        """How many numbers the parameter holds."""
        n = 1
        for d in self.data.shape:
            n *= d
        return n

    def numel(self) -> int:
        """How many numbers the parameter holds (PyTorch's name for :attr:`size`)."""
        return self.size

    def __repr__(self) -> str:
        return f"Parameter({self.name}, shape={self.shape}, dtype={_backend.dtype_name(self.data)})"


def shared(param: Any, shape: tuple[int, ...], where: str, dtype: str | None = None) -> Parameter:
    """``param`` itself, to be used in one more place (a tied weight), once its shape (and dtype) fit.

    Checked here, when the tie is made, so a misfit is an error naming both shapes, never a failed
    product at the next forward."""
    if not isinstance(param, Parameter):
        raise TypeError(f"{where} can share an nnx Parameter (such as embedding.weight), got {type(param).__name__}")
    if param.shape != tuple(shape):
        raise ShapeError(f"{where} must have shape {tuple(shape)} to be tied, got {param!r}; a Linear(in, out) "
                         f"weight is (out, in), the shape of an Embedding(out, in) weight")
    if dtype is not None and _backend.dtype_name(param.data) != dtype:
        raise DTypeError(f"{where} is {dtype} but the Parameter to share is {_backend.dtype_name(param.data)}; "
                         f"build both in one dtype")
    return param


_CASTS = ("exact", "any", "none")
_FLOAT_BITS = {"float16": 16, "float32": 32, "float64": 64}


def _castable(have: str, want: str, cast: str) -> bool:
    """Whether ``load_state_dict``'s rule ``cast`` turns an array of dtype ``have`` into ``want``."""
    if have not in _FLOAT_BITS or want not in _FLOAT_BITS or cast == "none":
        return False
    return cast == "any" or _FLOAT_BITS[have] < _FLOAT_BITS[want]


class SavesForBackward:
    """Keeping tensors from a forward for the one backward after it (layers and losses)."""

    _saved: Any = None
    _keeps = True  # False inside Layer.inference(): forwards keep nothing

    def save_for_backward(self, *values: Any) -> None:
        """Keep ``values`` for the next backward (replacing what an earlier forward kept)."""
        # into the instance dict: this runs every step, and Layer.__setattr__'s check of lists of
        # layers is for the attributes a layer's own code assigns
        self.__dict__["_saved"] = values if self._keeps else None

    def saved_tensors(self) -> tuple[Any, ...]:
        """Take back what the forward kept; a second call, or one without a forward, raises."""
        saved = self._saved
        if saved is None:
            raise StateError(
                f"{self!r}.backward called without a forward before it "
                f"(or twice after one forward); call forward first"
            )
        self.__dict__["_saved"] = None
        return saved


class _Passes:
    """Which outermost forward call is running: forwards nest (a model's forward calls its layers'), and
    what a layer keeps is tagged with the pass it belongs to, so a layer used twice in one forward keeps
    both, while a forward of a new pass over a layer still holding an earlier pass's tensors is refused."""

    depth = 0
    number = 0


def _records_output(forward: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(forward)
    def wrapper(self: "Layer", *args: Any, **kwargs: Any) -> Any:
        _Passes.depth += 1
        try:
            out = forward(self, *args, **kwargs)
        except BaseException:
            if _Passes.depth == 1:  # a failed forward leaves no half-kept pass behind
                for _, layer in self.named_modules():
                    layer._drop_pass(_Passes.number)
            raise
        finally:
            _Passes.depth -= 1
            if _Passes.depth == 0:
                _Passes.number += 1
        self.__dict__["_grad_spec"] = (type(out), out.dtype, out.shape) if hasattr(out, "dtype") else None
        return out

    wrapper._nnx_contract = True  # type: ignore[attr-defined]
    return wrapper


def _checks_gradient(backward: Callable[..., Any]) -> Callable[..., Any]:
    """``backward`` behind the incoming gradient's check, callable as ``backward(grad, *, input_grad=True)``
    whether or not it takes ``input_grad`` itself (decided here, once per class); other keyword
    arguments (the gradients of a recurrent layer's final states) pass through."""
    takes_input_grad = "input_grad" in inspect.signature(backward).parameters

    @functools.wraps(backward)
    def wrapper(self: "Layer", grad: Any, *, input_grad: bool = True, **more: Any) -> Any:
        spec = self._grad_spec
        if spec is not None and not (type(grad) is spec[0] and grad.dtype == spec[1] and grad.shape == spec[2]):
            self._gradient_mismatch(grad)
        if takes_input_grad:
            return backward(self, grad, input_grad=input_grad, **more)
        dx = backward(self, grad, **more)
        return dx if input_grad else None

    wrapper._nnx_contract = True  # type: ignore[attr-defined]
    return wrapper


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


class Layer(SavesForBackward):
    """Base class of layers and containers (see the module docstring for the contract)."""

    #: attribute names of this layer's non-trainable arrays, saved with the model
    buffer_names: ClassVar[tuple[str, ...]] = ()
    _grad_spec: Any = None
    #: True for a layer that keeps its own list of steps in ``_saved`` (the recurrent cells)
    _keeps_steps: ClassVar[bool] = False

    #: whether this class says which children it has (overrides ``named_children``); set per class
    _names_own_children: ClassVar[bool] = False
    _child_lists: ClassVar[tuple[str, ...]] = ()  # attributes a container's own named_children walks
    _inherits_children: ClassVar[bool] = False  # a subclass of such a container: other attributes are unseen
    #: sub-layers the constructor builds itself (a block's fixed parts); a model file's children replace
    #: them after the constructor has run (:meth:`from_config`)
    _children: ClassVar[tuple[str, ...]] = ()

    #: the constructor arguments that define the architecture, each kept in the attribute of the
    #: same name: :meth:`config` and ``repr`` read them (seeds, initialisers and backends never)
    arguments: ClassVar[tuple[str, ...]] = ()
    #: arguments that switch on the parameter of the same name (``bias``): the attribute holds the
    #: :class:`Parameter` or ``None``, and the argument is whether it is there
    optional_parameters: ClassVar[tuple[str, ...]] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for name, wrap in (("forward", _records_output), ("backward", _checks_gradient)):
            fn = cls.__dict__.get(name)
            if fn is not None and not getattr(fn, "_nnx_contract", False):
                setattr(cls, name, wrap(fn))
        # Only a class that writes named_children itself is trusted with plain containers of layers; its
        # subclasses are checked again, except in the attributes it names as its children's lists.
        cls._names_own_children = "named_children" in cls.__dict__
        cls._inherits_children = not cls._names_own_children and cls.named_children is not Layer.named_children

    def __init__(self) -> None:
        self.training = True

    # what forwards keep: a list of (pass number, tensors), newest last ------------------------

    def save_for_backward(self, *values: Any) -> None:
        """Keep ``values`` for the backward of this forward.

        A layer used twice in one forward keeps both, and its backwards take them back newest
        first (the order a container runs them). A training-mode forward while the layer still
        holds what an earlier forward kept, whose backward has not come, raises
        :class:`~nnx.errors.StateError`: its backward would otherwise get the newer input's
        gradient in silence. In evaluation mode (``eval()``) a forward replaces what an earlier
        one kept (its backward is the newest forward's). Inside :meth:`inference` nothing is kept.
        """
        if not self._keeps:
            return
        pending, number = self._saved, _Passes.number
        if pending is None or not self.training and pending[-1][0] != number:
            self.__dict__["_saved"] = [(number, values)]
        elif pending[-1][0] == number:
            pending.append((number, values))
        else:
            raise StateError(
                f"{self!r}.forward called again before the backward of the forward before it: that backward "
                f"would get this input's gradient. Call backward first; run forwards that need no backward "
                f"inside model.inference() (evaluation, logging); or drop the pending forward with "
                f"model.drop_saved()")

    def saved_tensors(self) -> tuple[Any, ...]:
        """Take back what the newest forward kept; a backward without a forward before it raises."""
        pending = self._saved
        if not pending:
            raise StateError(
                f"{self!r}.backward called without a forward before it "
                f"(or twice after one forward); call forward first"
            )
        _, values = pending.pop()
        if not pending:
            self.__dict__["_saved"] = None
        return values

    def _drop_pass(self, number: int) -> None:
        """Forget what the forward pass ``number`` kept (it failed; no backward will come)."""
        pending = self._saved
        if isinstance(pending, list) and not self._keeps_steps:
            kept = [entry for entry in pending if entry[0] != number]
            self.__dict__["_saved"] = kept or None

    def __setattr__(self, name: str, value: Any) -> None:
        if isinstance(value, (list, tuple, dict)) and not self._names_own_children and name not in self._child_lists:
            _refuse_plain_layers(self, name, value)
        elif self._inherits_children and isinstance(value, Layer) and name not in self._child_lists:
            raise LayerTreeError(
                f"{type(self).__name__}.{name} is a layer, but {type(self).__name__} names its children with the "
                f"named_children it inherits, which walks only {', '.join(self._child_lists) or 'its own list'}; "
                f"its weights would be neither trained nor saved. Put it among those children, or write "
                f"{type(self).__name__}.named_children to name it too")
        elif isinstance(value, Parameter):
            old = self.__dict__.get(name)
            if isinstance(old, Parameter) and old is not value:  # tying: head.weight = emb.weight
                shared(value, old.shape, f"{type(self).__name__}.{name}", _backend.dtype_name(old.data))
        object.__setattr__(self, name, value)

    # the forward/backward contract ------------------------------------------------

    def forward(self, x: Any) -> Any:
        """The output for input ``x``; keeps what backward needs (``save_for_backward``)."""
        raise NotImplementedError

    def backward(self, grad: Any, *, input_grad: bool = True) -> Any:
        """The gradient with respect to the input; adds into the parameters' gradients.

        A subclass writes ``backward(self, grad)``, or ``backward(self, grad, *, input_grad=True)``
        if it can skip computing the input's gradient. Callers may pass ``input_grad=False`` to
        any layer (the first layer of a network: nobody needs its input's gradient); the
        parameters' gradients are the same and the call returns ``None``.
        """
        raise NotImplementedError(f"{type(self).__name__} has no backward; write backward(self, grad)")

    def __call__(self, x: Any, *args: Any, **kwargs: Any) -> Any:
        return self.forward(x, *args, **kwargs)

    def _gradient_mismatch(self, grad: Any) -> None:
        """Raise the error that says how ``grad`` differs from the output it is the gradient of."""
        kind, dtype, shape = self._grad_spec
        where = f"{self!r}.backward"
        try:
            got = _backend.backend_of(grad)
        except BackendMismatchError:
            raise DTypeError(f"{where} expected an array as the gradient, got {type(grad).__name__}") from None
        expected = _backend.backend_of_type(kind)
        if got != expected:
            raise BackendMismatchError(f"{where} got a gradient on {got!r} for an output on {expected!r}; "
                                       f"move it with nnx.to_device(grad, {expected!r})")
        check_same_dtype(grad, dtype, where)
        if tuple(grad.shape) != tuple(shape):
            raise ShapeError(f"{where} expected a gradient of shape {tuple(shape)}, got {tuple(grad.shape)}")

    # the tree ----------------------------------------------------------------------

    def named_children(self) -> Iterator[tuple[str, "Layer"]]:
        """The layers directly inside this one, by attribute name (Sequential: ``"0"``, ``"1"``, ...)."""
        for name, value in vars(self).items():
            if isinstance(value, Layer):
                yield name, value

    def children(self) -> list["Layer"]:
        """The layers directly inside this one."""
        return [child for _, child in self.named_children()]

    def named_modules(self, prefix: str = "") -> Iterator[tuple[str, "Layer"]]:
        """This layer and every layer inside it, each once, as ``(dotted path, layer)``; the root is ``""``."""
        return self._walk(prefix, every_path=False)

    def _walk(self, prefix: str, every_path: bool) -> Iterator[tuple[str, "Layer"]]:
        """``(dotted path, layer)`` depth first from this layer: each layer once or, with
        ``every_path``, once per path that reaches it (a layer used twice; a layer inside itself is
        not followed into)."""
        seen: set[int] = set()
        stack: list[tuple[str, Layer, tuple[int, ...]]] = [(prefix, self, ())]
        while stack:
            path, layer, above = stack.pop()
            if id(layer) in (above if every_path else seen):
                continue
            seen.add(id(layer))
            yield path, layer
            inside = (*above, id(layer)) if every_path else ()
            stack.extend(reversed([(_join(path, n), c, inside) for n, c in layer.named_children()]))

    def get_submodule(self, path: str) -> "Layer":
        """The layer at dotted ``path`` (``""`` is this one); ``KeyError`` when there is none."""
        for name, layer in self.named_modules():
            if name == path:
                return layer
        raise KeyError(f"{type(self).__name__} has no layer {path!r}")

    def _own_parameters(self) -> Iterator[tuple[str, Parameter]]:
        for name, value in vars(self).items():
            if isinstance(value, Parameter):
                yield name, value

    def named_parameters(self, prefix: str = "") -> Iterator[tuple[str, Parameter]]:
        """``(dotted name, parameter)`` pairs such as ``("0.weight", p)``, in a fixed order."""
        seen: set[int] = set()
        for path, layer in self.named_modules(prefix):
            for name, p in layer._own_parameters():
                if id(p) not in seen:
                    seen.add(id(p))
                    yield _join(path, name), p

    def tied_parameters(self) -> list[tuple[str, str]]:
        """``(name, first name)`` for every place a parameter is reached again: a weight tied to
        another (``Linear(E, V, weight=emb.weight)``) or the parameters of a layer used twice.
        :meth:`named_parameters` and :meth:`state_dict` list such a parameter once, under its first
        name; a model file records these pairs and ties them again on load."""
        first: dict[int, str] = {}
        ties = []
        for path, layer in self._walk("", every_path=True):
            for name, p in layer._own_parameters():
                full = _join(path, name)
                if id(p) in first:
                    ties.append((full, first[id(p)]))
                else:
                    first[id(p)] = full
        return ties

    def tie(self, name: str, source: str) -> None:
        """Make parameter ``name`` (dotted) the very parameter ``source``: one array, its gradients
        from every use adding up. The shapes and dtypes must agree (checked now)."""
        params = dict(self.named_parameters())
        path, _, attr = name.rpartition(".")
        try:
            owner = self.get_submodule(path)
        except KeyError:
            owner = None
        if owner is None or not isinstance(getattr(owner, attr, None), Parameter):
            raise KeyError(f"{type(self).__name__} has no parameter {name!r} to tie")
        if source not in params:
            raise KeyError(f"{type(self).__name__} has no parameter {source!r} to tie {name!r} to")
        setattr(owner, attr, params[source])

    def parameters(self) -> list[Parameter]:
        """The trainable parameters, in a fixed order."""
        return [p for _, p in self.named_parameters()]

    def named_buffers(self, prefix: str = "") -> Iterator[tuple[str, Any]]:
        """``(dotted name, array)`` pairs of non-trainable state, such as ``("2.running_mean", a)``."""
        for path, layer in self.named_modules(prefix):
            for name in layer.buffer_names:
                yield _join(path, name), getattr(layer, name)

    def set_buffer(self, name: str, value: Any) -> None:
        """Replace buffer ``name`` (dotted) by ``value``: same shape, dtype and backend as the buffer
        it replaces (move it first with ``nnx.to_device(value, layer_backend, dtype)``)."""
        path, _, attr = name.rpartition(".")
        try:
            owner = self.get_submodule(path)
        except KeyError:
            owner = None
        if owner is None or attr not in owner.buffer_names:
            raise KeyError(f"{type(self).__name__} has no buffer {name!r}; it has {[n for n, _ in self.named_buffers()]}")
        old = getattr(owner, attr)
        where = f"{owner!r} buffer {attr!r}"
        _backend.check_backend(value, _backend.backend_of(old), where)
        check_same_dtype(value, old.dtype, where)
        if tuple(value.shape) != tuple(old.shape):
            raise ShapeError(f"{where} must have shape {tuple(old.shape)}, got {tuple(value.shape)}")
        setattr(owner, attr, value)

    def state_dict(self) -> dict[str, Any]:
        """Every parameter and buffer by dotted name (the arrays themselves, on their backend)."""
        state = {name: p.data for name, p in self.named_parameters()}
        for name, value in self.named_buffers():
            if name in state:
                raise ValueError(f"buffer {name!r} has the name of a parameter")
            state[name] = value
        return state

    def load_state_dict(self, state: Mapping[str, Any], *, source: str = "the state", cast: str = "exact") -> None:
        """Copy arrays (of any backend, or NumPy) into the parameters and buffers of the same names.

        Names and shapes must match exactly; each array moves onto the backend its
        target lives on and into its target's dtype by the rule ``cast``:

        * ``"exact"`` (default): a float array of a narrower float dtype is widened
          (float16 or float32 into float64, float16 into float32: every value kept);
          a wider one (float64 into float32 or float16) is refused, never truncated;
        * ``"any"``: any float dtype into the target's (PyTorch's rule; values are rounded);
        * ``"none"``: dtypes must match (what a model file loads with).

        Integer and bool arrays are never cast. Everything is checked before anything
        changes. Raises :class:`~nnx.errors.ShapeError` for missing, extra or misshapen
        tensors and :class:`~nnx.errors.DTypeError` for dtypes.
        """
        if cast not in _CASTS:
            raise ValueError(f"load_state_dict cast must be one of {_CASTS}, got {cast!r}")
        params = dict(self.named_parameters())
        targets = {n: ("parameter", p.data) for n, p in params.items()}
        targets.update({n: ("buffer", v) for n, v in self.named_buffers()})
        missing, extra = set(targets) - set(state), set(state) - set(targets)
        if missing:
            raise ShapeError(f"lacks tensors the architecture needs: {quote_names(missing)}")
        if extra:
            raise ShapeError(f"has tensors the architecture does not have: {quote_names(extra)}")
        for name, (kind, current) in targets.items():
            value = state[name]
            if tuple(value.shape) != tuple(current.shape):
                raise ShapeError(f"{kind} {name!r} has shape {tuple(value.shape)} in {source} but the "
                                 f"architecture needs {tuple(current.shape)}")
            have, want = _backend.dtype_name(value), _backend.dtype_name(current)
            if have != want and not _castable(have, want, cast):
                hint = ("; pass cast='any' to round it into " + want if cast == "exact" and _castable(have, want, "any")
                        else "")
                raise DTypeError(f"{kind} {name!r} is {have} in {source} but the architecture makes it {want}{hint}")
        first = dict(self.tied_parameters())  # a tied parameter's state is under its first name
        for path, layer in self.named_modules():
            own = [n for n, _ in layer._own_parameters()] + list(layer.buffer_names)
            layer.check_arrays({n: state[first.get(_join(path, n), _join(path, n))] for n in own},
                               f"{source}'s layer {path or 'model'}")
        for name, (kind, current) in targets.items():
            want = _backend.dtype_name(current)
            value = _backend.to_device(state[name], _backend.backend_of(current),
                                       want if _backend.dtype_name(state[name]) != want else None)
            if kind == "parameter":
                params[name].data, params[name].grad = value, None
            else:
                self.set_buffer(name, value)

    def check_arrays(self, arrays: Mapping[str, Any], where: str) -> None:
        """Judge values about to become this layer's own parameters and buffers (``arrays``, by
        attribute name, of any backend) as the constructor judges its arguments; ``where`` names
        their source for the message. :meth:`load_state_dict` calls it on every layer before it
        changes anything, so a model file or checkpoint cannot load values the layer would never
        make. By default every floating-point array must be finite; a layer whose arrays obey more
        rules (a standard deviation above 0) extends it. Raises
        :class:`~nnx.errors.NonFiniteError` or ``ValueError`` naming the array.
        """
        for name, value in arrays.items():
            xp = _backend.namespace_of(value)
            if xp.isdtype(value.dtype, "real floating") and not bool(xp.all(xp.isfinite(value))):
                raise NonFiniteError(f"{where}: {self!r} {name!r} holds NaN or infinite values, which no "
                                     f"trained {type(self).__name__} has; the values are damaged or forged")

    def random_states(self) -> dict[str, Any]:
        """The state of every layer's own host generator (attribute ``rng``), by dotted path."""
        return {path: _random.get_state(layer.rng) for path, layer in self.named_modules()
                if _random.is_generator(getattr(layer, "rng", None))}

    def set_random_states(self, states: Mapping[str, Any]) -> None:
        """Restore generator states from :meth:`random_states` (layers not named keep theirs)."""
        for path, layer in self.named_modules():
            if path in states and _random.is_generator(getattr(layer, "rng", None)):
                _random.set_state(layer.rng, states[path])

    # modes and placement -----------------------------------------------------------------

    def zero_grad(self) -> None:
        """Forget accumulated gradients."""
        for p in self.parameters():
            p.grad = None

    def train(self, mode: bool = True) -> "Layer":
        """Switch this layer and every layer inside it to training mode (evaluation with ``False``)."""
        for _, layer in self.named_modules():
            layer.training = mode
        return self

    def eval(self) -> "Layer":
        """Switch to evaluation mode."""
        return self.train(False)

    @contextlib.contextmanager
    def inference(self) -> Iterator["Layer"]:
        """Inside the block every layer is in evaluation mode and its forwards keep nothing for a
        backward (no activations held: a backward there raises :class:`~nnx.errors.StateError`);
        afterwards each layer is back in its own mode, and what a training forward before the block
        kept is there again for its backward. :func:`nnx.predict` and :func:`nnx.evaluate`
        run in it."""
        layers = [layer for _, layer in self.named_modules()]
        modes = [(layer.training, layer._saved) for layer in layers]
        for layer in layers:
            layer.training, layer._keeps, layer._saved = False, False, None
        try:
            yield self
        finally:  # a training forward before the block still has its backward to come
            for layer, (mode, pending) in zip(layers, modes):
                layer.training, layer._saved = mode, pending
                layer.__dict__.pop("_keeps", None)

    def drop_saved(self) -> None:
        """Forget what forwards kept for a backward that will not come (frees device memory)."""
        for _, layer in self.named_modules():
            layer._saved = None

    def to(self, backend: str | None = None, *, dtype: Any = None) -> "Layer":
        """Move every parameter and buffer onto ``backend`` and/or cast them to float ``dtype``
        (``"float32"`` or ``"float64"``, or a dtype object or class meaning one): an explicit copy;
        returns self.

        Casting changes the floating-point parameters and buffers (integer buffers keep their
        dtype) and the ``dtype`` the layers were built with, so a saved model rebuilds in the new
        dtype. Gradients and what forwards kept are dropped. An optimizer built before keeps
        working: its state follows the parameters at its next ``step()``.
        """
        if backend is None and dtype is None:
            raise ValueError("to() needs a backend name, a dtype, or both, e.g. model.to('cupy') or "
                             "model.to(dtype='float64')")
        if backend is not None:
            _backend.get(backend)
        if dtype is not None:  # a dtype object of any backend or a class means its name: configs hold names
            if _backend.dtype_label(dtype) not in _backend.FLOAT_DTYPES:
                raise DTypeError(f"to() casts to a float dtype, one of {_backend.FLOAT_DTYPES}; got {dtype!r}")
            dtype = _backend.dtype_label(dtype)
        for _, layer in self.named_modules():
            layer._to(backend, dtype)
        return self

    def _to(self, name: str | None, dtype: str | None = None) -> None:
        """Move this layer's own arrays (not its children's) onto backend ``name`` (``None``: where each
        is), casting float arrays to ``dtype`` when given; layers that cache a backend or dtype extend it."""
        def move(value: Any) -> Any:
            cast = dtype if dtype is not None and _backend.dtype_name(value).startswith("float") else None
            return _backend.to_device(value, name or _backend.backend_of(value), cast)

        for _, p in self._own_parameters():
            p.data = move(p.data)
            p.grad = None
        for key in self.buffer_names:
            setattr(self, key, move(getattr(self, key)))
        if dtype is not None and isinstance(getattr(self, "dtype", None), str):
            self.dtype = dtype
        self._saved = None

    @property
    def backend(self) -> str | None:
        """The backend the parameters live on, or ``None`` for a layer without parameters."""
        params = self.parameters()
        return _backend.backend_of(params[0].data) if params else None

    def num_parameters(self) -> int:
        """How many trainable numbers the layer (and every layer inside it) has."""
        return sum(p.size for p in self.parameters())

    # watching calls ------------------------------------------------------------------

    @contextlib.contextmanager
    def observe(self, callback: Callable[[str, "Layer", str, Any, Any], None],
                methods: tuple[str, ...] = ("forward",)) -> Iterator[None]:
        """Inside the block, call ``callback(path, layer, method, argument, result)`` after each
        call of ``methods`` on this layer or any layer inside it (innermost calls first)."""
        patched = []
        for path, layer in self.named_modules():
            for method in methods:
                original = getattr(layer, method)

                def watched(arg: Any, *rest: Any, _f: Any = original, _p: str = path, _l: Layer = layer,
                            _m: str = method, **keywords: Any) -> Any:
                    result = _f(arg, *rest, **keywords)
                    callback(_p, _l, _m, arg, result)
                    return result

                layer.__dict__[method] = watched
                patched.append((layer, method))
        try:
            yield
        finally:
            for layer, method in patched:
                layer.__dict__.pop(method, None)

    # architecture ------------------------------------------------------------------

    def config(self) -> dict[str, Any]:
        """The constructor arguments that define the architecture (JSON), children excluded: by
        default each name of :attr:`arguments` with its attribute's value (tuples as lists)."""
        return {name: _plain(self._argument(name)) for name in self.arguments}

    def _argument(self, name: str) -> Any:
        """The value of argument ``name`` (of :attr:`arguments`), read from its attribute."""
        value = getattr(self, name)
        return value is not None if name in self.optional_parameters else value

    def describe(self, type_name: Callable[[type], str] | None = None) -> dict[str, Any]:
        """The architecture as JSON: ``{"type", "config", "children": [[name, description], ...]}``
        (no ``children`` for a layer without sub-layers). ``type_name`` names a class (default:
        its ``__name__``; model files use the name it was registered under)."""
        name = type_name(type(self)) if type_name is not None else type(self).__name__
        config = self.config()
        try:
            if json.loads(json.dumps(config)) != config:
                raise TypeError("it does not survive a JSON round trip")
        except (TypeError, ValueError) as exc:
            raise TypeError(f"cannot describe {self!r}: its config() {config!r} is not plain JSON ({exc})") from None
        node: dict[str, Any] = {"type": name, "config": config}
        children = [[n, child.describe(type_name)] for n, child in self.named_children()]
        if children:
            node["children"] = children
        return node

    @classmethod
    def from_config(cls, config: Mapping[str, Any], children: Mapping[str, "Layer"]) -> "Layer":
        """Build a layer from :meth:`config` and its children (rebuilt first), as a model file does.

        By default children are passed as keyword arguments named as their
        attributes, or, for a class that names the children its constructor builds
        (``_children``), put in their place afterwards; a container with another wiring
        (``Sequential``) overrides this.
        A key the constructor does not take is a ``TypeError`` naming it, before
        the constructor runs.
        """
        if cls._children:
            return cls(**config)._take_children(children)
        params = inspect.signature(cls).parameters
        if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
            unknown = sorted((set(config) | set(children)) - set(params))
            if unknown:
                raise TypeError(f"{cls.__name__} takes no argument(s) {unknown}; it takes {sorted(params)}")
        return cls(**config, **children)

    def _take_children(self, children: Mapping[str, "Layer"]) -> "Layer":
        """Put a model file's ``children`` in place of those the constructor built (:attr:`_children`)."""
        if set(children) != set(self._children):
            raise TypeError(f"{type(self).__name__} needs the children {list(self._children)}, got "
                            f"{sorted(children)}")
        for name in self._children:
            setattr(self, name, children[name])
        return self

    @classmethod
    def config_size(cls, config: Mapping[str, Any]) -> int:
        """How many array elements (parameters and buffers) a layer built from ``config`` holds,
        told before it is built: a model file's loader refuses configs whose sizes exceed the file.

        Layers with arrays state it exactly. This default, for a layer that does not, is a bound
        that never lets a config through unchecked: the product of every positive int in the
        config (inside lists and objects too). A layer that holds arrays of another size, or
        whose ints are not sizes, overrides it.
        """
        return ints_product(config)

    def example_input(self, batch: int, rng: Any, fits: Callable[[tuple[int, ...]], bool]) -> Any:
        """Seeded host data of ``batch`` samples this layer accepts (drawn from ``rng``), for parity
        checks of a model (``nnx parity --model``); ``fits(shape)`` says whether the whole model
        accepts an input shape. ``None``: this layer takes whatever the layers after it take."""
        raise ShapeError(f"cannot draw example inputs for {type(self).__name__}: it does not state what it "
                         f"takes; give it a method example_input(batch, rng, fits) returning host data of "
                         f"batch samples (or None if it takes any input the layers after it take)")

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        """The shape ``forward`` returns for an input of ``input_shape`` (same shape by default)."""
        return tuple(input_shape)

    def fixed_input_shape(self) -> tuple[int | None, ...] | None:
        """The input shape this layer fixes, ``None`` standing for the batch axis (``Linear(784, 10)``:
        ``(None, 784)``), or ``None`` when it fixes none (a convolution takes any image size).
        A container answers for its first layer; :meth:`summary` uses it when given no shape."""
        return None

    def summary(self, input_shape: tuple[int | None, ...] | None = None) -> str:
        """A table of every layer inside this one, its output shape for ``input_shape`` (batch
        axis included) and its parameter count, with the total. Computes shapes only; runs no forward.

        Without ``input_shape``, the shape the first layer fixes (:meth:`fixed_input_shape`) is used,
        with the batch axis shown as ``None``; a model whose first layer fixes none needs the shape.
        """
        if input_shape is None:
            input_shape = self.fixed_input_shape()
            if input_shape is None:
                raise ShapeError(f"summary() of this {type(self).__name__} needs an input shape: its first layer "
                                 f"does not fix one; pass it with the batch axis, e.g. model.summary((32, 1, 28, 28))")
        shapes: dict[str, tuple[int, ...]] = {}
        with self.observe(lambda path, layer, method, arg, result: shapes.setdefault(path, result),
                          methods=("output_shape",)):
            self.output_shape(tuple(input_shape))
        rows = [("layer", "output shape", "params")]
        for path, layer in self.named_modules():
            if not path:
                continue
            label = type(layer).__name__ if layer.children() else repr(layer)
            indent = "  " * path.count(".")
            rows.append((f"{indent}({path}) {label}", str(shapes.get(path, "-")), f"{layer.num_parameters():,}"))
        widths = [max(len(r[c]) for r in rows) for c in range(3)]
        line = "-" * (sum(widths) + 4)
        out = [f"{rows[0][0]:<{widths[0]}}  {rows[0][1]:<{widths[1]}}  {rows[0][2]:>{widths[2]}}", line]
        out += [f"{a:<{widths[0]}}  {b:<{widths[1]}}  {c:>{widths[2]}}" for a, b, c in rows[1:]]
        out += [line, f"total parameters: {self.num_parameters():,}"]
        return "\n".join(out)

    def __repr__(self) -> str:
        """The class and its config: required arguments by value, numbers by name, the others
        (flags, names, keyword-only settings) by name where they differ from the default."""
        params = inspect.signature(type(self)).parameters
        shown = []
        for key, value in self.config().items():
            value = self._argument(key) if key in self.arguments else value
            p = params.get(key)
            if p is None or p.default is p.empty:
                required = p is not None and p.kind is p.POSITIONAL_OR_KEYWORD
                shown.append(repr(value) if required else f"{key}={value!r}")
            elif value != _plain(p.default) or (_is_number(value) and p.kind is not p.KEYWORD_ONLY):
                shown.append(f"{key}={value!r}")
        return f"{type(self).__name__}({', '.join(shown)})"


class ParamLayer(Layer):
    """A layer with parameters that checks its inputs share the parameters' backend and dtype."""

    def _reference(self) -> Parameter:
        """The parameter whose backend and dtype inputs must match (the first one)."""
        return self.parameters()[0]

    def _check_input(self, x: Any, where: Any) -> Any:
        """Check ``x`` against the parameters; ``where`` (a string, or an object whose
        ``str`` is one, so hot paths format it only on failure) names the caller."""
        first = self._reference().data
        if type(x) is type(first) and x.dtype == first.dtype:  # the parameters' backend and float dtype
            return _backend.namespace_of(x)
        _backend.check_backend(x, _backend.backend_of(first), where)
        xp = check_float(x, where)
        check_same_dtype(x, first.dtype, where)
        return xp


# the most a config can imply: more than any file holds
_NO_BOUND = 2**64


def ints_product(config: Mapping[str, Any]) -> int:
    """The product of the positive ints (not bools) anywhere in ``config``, at most 2**64; 0 if none."""
    product, found, stack = 1, False, [config]
    while stack:
        value = stack.pop()
        if isinstance(value, Mapping):
            stack.extend(value.values())
        elif isinstance(value, (list, tuple)):
            stack.extend(value)
        elif isinstance(value, int) and not isinstance(value, bool) and value > 0:
            product, found = min(product * value, _NO_BOUND), True
    return product if found else 0


def _plain(value: Any) -> Any:
    """``value`` as JSON keeps it: tuples become lists."""
    return [_plain(v) for v in value] if isinstance(value, (tuple, list)) else value


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def count(value: Any) -> int:
    """``value`` if it is a positive int (not a bool), else 0: a size read from an unchecked config."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


@classmethod  # type: ignore[misc]
def holds_no_arrays(cls: type, config: Mapping[str, Any]) -> int:
    """``config_size`` of a layer without parameters or buffers (``config_size = holds_no_arrays``)."""
    return 0


def takes_any_input(self: Layer, batch: int, rng: Any, fits: Callable[[tuple[int, ...]], bool]) -> None:
    """``example_input`` of a layer that takes any input the layers after it take."""
    return None


def _refuse_plain_layers(owner: Layer, name: str, value: Any, path: str = "") -> None:
    """Raise if the list, tuple or dict ``value`` holds a layer, at any depth (a list of lists of
    layers too): the tree walk would not find it."""
    for key, item in value.items() if isinstance(value, dict) else enumerate(value):
        here = f"{path or name}[{key!r}]"
        if isinstance(item, (list, tuple, dict)):
            _refuse_plain_layers(owner, name, item, here)
        elif isinstance(item, Layer):
            holder, kind = ("LayerDict", "dict") if isinstance(value, dict) else ("LayerList", type(value).__name__)
            fix = f"nnx.{holder}({name})" if not path else f"nnx.LayerList of nnx.{holder}s, one for each inner {kind}"
            raise LayerTreeError(
                f"{type(owner).__name__}.{name} is a plain {kind if not path else 'container'} holding a layer "
                f"({here} is {type(item).__name__}); the layer tree does not look inside it, so its weights "
                f"would be neither trained nor saved. Assign nnx.{holder}(...) instead: self.{name} = {fix}")


def quote_names(names: Any) -> str:
    """Up to five names for an error message."""
    names = sorted(names)
    shown = ", ".join(repr(n) for n in names[:5])
    return shown + (f" and {len(names) - 5} more" if len(names) > 5 else "")


__all__ = ["Layer", "Parameter"]
