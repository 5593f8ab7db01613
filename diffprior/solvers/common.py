"""Pieces every latent-diffusion solver shares: the prior protocol, the forward model, the
measurement loss, a batched conjugate-gradient solver and the typed enumerations.

Units: images are in ``[0, 1]`` at every public boundary and inside the solvers. The P2L
paper (and the code its step sizes come from) measures the residual
:math:`\\|y - \\mathcal{A}(\\mathcal{D}(z))\\|` on ``[-1, 1]`` images, which for a linear
operator is exactly twice the ``[0, 1]`` residual; the guidance losses multiply by
:data:`RESIDUAL_SCALE` so that the paper's step sizes :math:`\\rho` keep their meaning. The
residuals *reported* (in :class:`~diffprior.solvers.core.StepStats` and ``history()``) are
plain ``[0, 1]``-unit norms.
"""

from __future__ import annotations

import enum
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from ..errors import DiffpriorError
from ..priors.protocol import SOLVER_MEMBERS as _PRIOR_MEMBERS
from ..priors.protocol import DiffusionPrior

#: Ratio between the paper's ``[-1, 1]`` residual and our ``[0, 1]`` residual (see module doc).
RESIDUAL_SCALE = 2.0


# ----------------------------------------------------------------------------- enumerations
class Loss(str, enum.Enum):
    """How the measurement residual :math:`r = y - \\mathcal{A}(\\mathcal{D}(\\hat z_0))` enters a loss.

    ``NORM`` is :math:`\\|r\\|_2`, the DPS convention ("a static step size with the gradient of
    the norm", P2L App. B.1); ``SQUARED`` is :math:`\\|r\\|_2^2` as the equations are written.
    """

    NORM = "norm"
    SQUARED = "squared"


class Status(enum.IntEnum):
    """Per-sample solver status (carried inside ``jit`` as an ``int32`` array)."""

    OK = 0
    NONFINITE = 1  #: a NaN or infinity appeared in the latent or the text embedding
    DIVERGED = 2  #: the latent left the ball ``|z| <= divergence_threshold``


class Task(str, enum.Enum):
    """The inverse problems of the P2L paper (keys of the hyperparameter presets)."""

    SR = "sr"
    DEBLUR_GAUSS = "deblur_gauss"
    DEBLUR_MOTION = "deblur_motion"
    INPAINT = "inpaint"


class Dataset(str, enum.Enum):
    """Which hyperparameter presets: the paper's Table 6 columns (FFHQ faces, ImageNet general
    domain, both for Stable Diffusion) or ``CIFAR10``, the values found by the validation search
    of ``benchmarks/tune.py`` for the bundled CIFAR-10 prior (:mod:`diffprior.solvers.tuned`)."""

    FFHQ = "ffhq"
    IMAGENET = "imagenet"
    CIFAR10 = "cifar10"


# ----------------------------------------------------------------------------- the prior
#: The prior protocol, :class:`diffprior.priors.DiffusionPrior` (kept under its former name).
#: The solvers use only ``schedule``, ``encode``, ``decode``, ``eps_and_x0`` and ``embed``
#: (see :func:`check_prior`).
LatentPrior = DiffusionPrior


def check_prior(prior) -> None:
    """Raise ``TypeError`` unless ``prior`` has the members of :class:`~diffprior.priors.DiffusionPrior`
    that solvers use (``schedule``, ``encode``, ``decode``, ``eps_and_x0``, ``embed``) and is a pytree."""
    missing = [m for m in _PRIOR_MEMBERS
               if not (hasattr(prior, m) if m == "schedule" else callable(getattr(prior, m, None)))]
    if missing:
        raise TypeError(
            f"prior must be a LatentDiffusionPrior or implement the DiffusionPrior protocol "
            f"({', '.join(_PRIOR_MEMBERS)}; see diffprior.priors); got {type(prior).__name__}"
            + (f" lacking {', '.join(missing)}" if not isinstance(prior, (str, bytes, np.ndarray, jax.Array)) else ""))
    leaves = jax.tree_util.tree_leaves(prior)
    if len(leaves) == 1 and leaves[0] is prior:
        raise TypeError(f"prior of type {type(prior).__name__} is not a JAX pytree: register it "
                        "(e.g. with flax.struct.dataclass) so its arrays can pass through jax.jit")


class PriorMismatchError(DiffpriorError, TypeError):
    """A solver, or one of its options, does not fit the kind of prior it was given (a pixel
    solver on a latent prior, prompt tuning on a prior without text conditioning, ...)."""


def prior_kind(prior) -> str:
    """How a prior describes itself in error messages: ``"latent prior 'name' (Class)"``."""
    meta = getattr(prior, "metadata", None)
    if meta is None:
        return f"prior {type(prior).__name__}"
    kind = "latent" if meta.latent else "pixel-space"
    text = "text-conditioned" if meta.conditioning else "unconditional"
    return f"{text} {kind} prior {meta.name!r} ({type(prior).__name__})"


def check_prior_kind(solver: str, prior, requirements) -> None:
    """Raise :class:`PriorMismatchError` unless ``prior.metadata`` meets every requirement.

    Args:
        solver: the solver's name (for the message).
        prior: the prior; one without ``metadata`` (a minimal stand-in) passes unchecked.
        requirements: ``(field, value, what, hint)`` tuples: ``metadata.<field>`` must equal
            ``value`` because of ``what`` (e.g. "prompt tuning"); ``hint`` says what to do instead.
    """
    meta = getattr(prior, "metadata", None)
    if meta is None:
        return
    for field, value, what, hint in requirements:
        if bool(getattr(meta, field)) != bool(value):
            need = {("latent", True): "a latent prior", ("latent", False): "a pixel-space prior",
                    ("conditioning", True): "a text-conditioned prior",
                    ("conditioning", False): "an unconditional prior"}[(field, bool(value))]
            raise PriorMismatchError(f"{solver}: {what} needs {need} (metadata.{field} {bool(value)}), got the "
                                     f"{prior_kind(prior)}; {hint}")


# ----------------------------------------------------------------------------- the forward model
def _is_linear(A) -> bool:
    from scico.linop import LinearOperator

    return isinstance(A, LinearOperator)


@jax.tree_util.register_pytree_node_class
class Forward:
    """A forward model applied to a batch ``(N, H, W, C)`` of images; a JAX pytree.

    Wraps a ``scico`` operator defined on one image (``input_shape == (H, W, C)``, applied
    with ``jax.vmap``), a ``scico`` operator on the whole batch (``input_shape == (N, H, W,
    C)``), or a plain differentiable callable on the batch. ``adj`` exists for
    :class:`scico.linop.LinearOperator` only and is the operator's exact adjoint.

    Operators of :mod:`operators` are pytrees themselves: their arrays (kernels, masks) are
    the leaves of this ``Forward`` and are traced through ``jax.jit``, so a solver compiled
    for one operator serves every operator of the same kind and shapes. Any other operator
    or callable is static structure, compared by identity: a new instance compiles anew.
    """

    def __init__(self, A, image_shape: tuple, batched: bool):
        self.A = A
        self.image_shape = tuple(image_shape)
        self.batched = bool(batched)
        self.linear = _is_linear(A)
        #: whether the operator's arrays are traced data (an operator of :mod:`operators`)
        self.traced = _is_data_operator(A)

    # flattening runs at every call of a jitted function: no imports or type checks there
    def tree_flatten(self):
        static = (self.image_shape, self.batched, self.linear)
        if self.traced:
            return (self.A,), (None,) + static
        return (), (_Opaque(self.A),) + static

    @classmethod
    def tree_unflatten(cls, aux, children):
        opaque, image_shape, batched, linear = aux
        fwd = object.__new__(cls)
        fwd.A = children[0] if opaque is None else opaque.obj
        fwd.image_shape, fwd.batched, fwd.linear, fwd.traced = image_shape, batched, linear, opaque is None
        return fwd

    def __repr__(self):
        return f"Forward({type(self.A).__name__}, image_shape={self.image_shape}, batched={self.batched})"

    def __call__(self, x):
        return self.A(x) if self.batched else jax.vmap(self.A)(x)

    def adj(self, y):
        if not self.linear:
            raise TypeError(f"{type(self.A).__name__} is not a scico.linop.LinearOperator: no adjoint")
        y = y.astype(self.A.output_dtype)
        return self.A.adj(y) if self.batched else jax.vmap(self.A.adj)(y)

    def gram(self, x):
        """:math:`A^T A x`."""
        return self.adj(self(x))


class _Opaque:
    """Static pytree data compared by identity (an operator whose arrays cannot be traced)."""

    __slots__ = ("obj",)

    def __init__(self, obj):
        self.obj = obj

    def __eq__(self, other):
        return isinstance(other, _Opaque) and other.obj is self.obj

    def __hash__(self):
        return id(self.obj)


def _is_data_operator(A) -> bool:
    from operators import ImageOperator

    return isinstance(A, ImageOperator)


def make_forward(A, y, image_shape: Sequence[int] | None = None):
    """Validate a measurement against its operator; return ``(Forward, y (N, ...), N)``.

    Rules: an operator with ``input_shape`` of rank 3 is per image, and ``y`` is its
    ``output_shape`` (one sample) or ``(N, *output_shape)``; an operator with ``input_shape``
    of rank 4 acts on the whole batch and ``y.shape == output_shape``; a plain callable acts
    on the batch ``(N, *image_shape)`` and needs ``image_shape``.

    Raises:
        TypeError: ``A`` is not callable or ``y`` is not an array.
        ValueError: a shape does not fit, or ``y`` holds NaN or infinity.
    """
    if not callable(A):
        raise TypeError(f"A must be a scico Operator/LinearOperator or a callable, got {type(A).__name__}")
    try:
        y = jnp.asarray(y)
    except TypeError as e:
        raise TypeError(f"y must be an array, got {type(y).__name__}") from e
    if not jnp.issubdtype(y.dtype, jnp.floating):
        raise TypeError(f"y must be a floating-point array, got dtype {y.dtype}")
    y = y.astype(jnp.float32)
    in_shape = getattr(A, "input_shape", None)
    out_shape = getattr(A, "output_shape", None)
    if in_shape is not None and out_shape is not None:
        in_shape, out_shape = tuple(in_shape), tuple(out_shape)
        if len(in_shape) == 4:
            if y.shape != out_shape:
                raise ValueError(f"y has shape {y.shape}, but A acts on the batch {in_shape} and its "
                                 f"output_shape is {out_shape}")
            image_shape_, batched = in_shape[1:], True
        elif len(in_shape) == 3:
            if y.shape == out_shape:
                y = y[None]
            elif y.shape[1:] != out_shape:
                raise ValueError(f"y has shape {y.shape}; A.output_shape is {out_shape}: expected "
                                 f"{out_shape} or (N, {', '.join(map(str, out_shape))})")
            image_shape_, batched = in_shape, False
        else:
            raise ValueError(f"A.input_shape must be (H, W, C) or (N, H, W, C), got {in_shape}")
        if image_shape is not None and tuple(image_shape) != image_shape_:
            raise ValueError(f"image_shape={tuple(image_shape)} disagrees with A.input_shape={in_shape}")
        image_shape = image_shape_
    else:
        if image_shape is None:
            raise ValueError("A has no input_shape: pass image_shape=(H, W, C)")
        image_shape, batched = tuple(image_shape), True
        if y.ndim == 0:
            raise ValueError("y must have a leading batch axis (N, ...)")
        try:
            out = jax.eval_shape(A, jax.ShapeDtypeStruct((y.shape[0], *image_shape), jnp.float32))
        except Exception as e:  # noqa: BLE001 -- report any failure of the user's callable clearly
            raise ValueError(f"A could not be applied to images of shape {(y.shape[0], *image_shape)}: {e}") from e
        if tuple(out.shape) != y.shape:
            raise ValueError(f"y has shape {y.shape}, but A maps {(y.shape[0], *image_shape)} images to {out.shape}")
    if len(image_shape) != 3:
        raise ValueError(f"images must be (H, W, C), got image_shape={image_shape}")
    if y.shape[0] == 0:
        raise ValueError(f"y holds no samples (shape {tuple(y.shape)}): a solver needs at least one")
    bad = np.flatnonzero(~np.asarray(jnp.all(jnp.isfinite(y.reshape(y.shape[0], -1)), axis=1)))
    if bad.size:
        raise ValueError(f"y contains NaN or infinity in sample(s) {bad.tolist()}")
    fwd = Forward(A, image_shape, batched)
    if fwd.linear and not fwd.traced:
        # Build scico's lazily created adjoint on the host, not inside a jit trace.
        A.adj(jnp.zeros(A.output_shape, A.output_dtype))
    return fwd, y, int(y.shape[0])


# ----------------------------------------------------------------------------- losses
def batch_dot(a, b):
    """Per-sample inner products :math:`\\langle a_n, b_n\\rangle` over all axes but the first."""
    return jnp.sum((a * b).reshape(a.shape[0], -1), axis=1)


def safe_norm(a):
    """Per-sample Euclidean norm with a zero (not NaN) gradient at zero."""
    s = batch_dot(a, a)
    pos = s > 0
    return jnp.where(pos, jnp.sqrt(jnp.where(pos, s, 1.0)), 0.0)


def residual(fwd: Forward, y, x):
    """Per-sample measurement residual :math:`\\|y - \\mathcal{A}(x)\\|_2` in ``[0, 1]`` units, ``(N,)``."""
    return safe_norm(y - fwd(x))


def penalty(norm, loss: Loss):
    """A per-sample norm as it enters a loss (:class:`Loss`)."""
    return norm if loss is Loss.NORM else norm ** 2


# ----------------------------------------------------------------------------- linear algebra
def batched_cg(matvec: Callable, b, x0, iters: int):
    """Conjugate gradient for a batch of independent SPD systems :math:`M x_n = b_n`.

    Each sample has its own inner products and step lengths; exactly ``iters`` iterations
    run (a fixed trip count inside ``jit``); a converged sample stays put.

    Derivatives (PSLD differentiates its gluing, :func:`~diffprior.solvers.consistency.glue`)
    hold the step lengths :math:`\\alpha_k, \\beta_k` constant: the result is differentiated
    as the fixed polynomial in ``matvec`` that the iterations built, a linear map of ``b`` and
    ``x0`` (exact where CG has converged). Differentiating the step lengths themselves divides
    by inner products that vanish once the residual does, and gives NaN.
    """

    def div(num, den):
        ok = den > 0
        return jnp.where(ok, num / jnp.where(ok, den, 1.0), 0.0)

    def bc(a, x):
        return a.reshape(a.shape + (1,) * (x.ndim - 1))

    r = b - matvec(x0)
    rs = batch_dot(r, r)

    def body(_, carry):
        x, r, p, rs = carry
        mp = matvec(p)
        alpha = lax.stop_gradient(div(rs, batch_dot(p, mp)))
        x = x + bc(alpha, x) * p
        r = r - bc(alpha, r) * mp
        rs_new = batch_dot(r, r)
        p = r + bc(lax.stop_gradient(div(rs_new, rs)), p) * p
        return x, r, p, rs_new

    x, *_ = lax.fori_loop(0, iters, body, (x0, r, r, rs))
    return x


def per_sample(value, n: int, name: str):
    """Broadcast a scalar or length-``n`` hyperparameter to a float32 ``(n,)`` array."""
    a = np.asarray(value, np.float32)
    if a.ndim == 0:
        a = np.full((n,), a, np.float32)
    if a.shape != (n,):
        raise ValueError(f"{name} must be a scalar or have one value per sample ({n}), got shape {a.shape}")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} must be finite, got {value}")
    return jnp.asarray(a)


def bcast(a, x):
    """Reshape a per-sample ``(N,)`` array to broadcast against ``x`` ``(N, ...)``."""
    return a.reshape(a.shape + (1,) * (x.ndim - 1))
