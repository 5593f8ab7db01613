"""Data-consistency strategies: small frozen objects the solvers are assembled from.

Three kinds, each a hashable dataclass (so a solver's whole plan is a static ``jit``
argument) with one pure method:

* **latent updates** turn the guidance gradient :math:`g = \\nabla_{z_t}\\ell` into the step
  subtracted after DDIM: :class:`GradientDescent` (P2L Alg. 4, LDPS Eq. 20) and
  :class:`AdamHistory` (LDIR Eqs. 21-24, P2L Alg. 5);
* **regularisers** add a term to the guidance loss :math:`\\ell(z_t)`:
  :class:`FixedPointRegularizer` (GML-DPS Eq. 25) and :class:`GluingRegularizer` (PSLD Eq. 26);
* **projections** replace the clean-latent estimate :math:`\\hat z_0` every few steps by
  :math:`\\mathcal{E}(\\hat x)` for an image :math:`\\hat x` consistent with the measurement:
  :class:`ProximalProjection` (P2L Eq. 16; with a pixel prior, whose encoder is the affine map
  :math:`2x - 1`, DDS's CG step), :class:`NoiseLevelProjection` (DiffPIR's data step, the same
  proximal problem with a weight that follows the noise level) and :class:`GluingProjection`
  (the "gluing" alternative of P2L Table 5). A projection's ``image(fwd, y, x, abar)`` gets
  :math:`\\bar\\alpha_t` of the step; only :class:`NoiseLevelProjection` uses it.

The prompt-tuning step (P2L Alg. 3) lives in :mod:`diffprior.solvers.prompt`.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import optax
from jax import lax

from .common import Forward, Loss, batch_dot, batched_cg, bcast, penalty, safe_norm
from .config import register_component


# ----------------------------------------------------------------------------- latent updates
@register_component
@dataclasses.dataclass(frozen=True)
class GradientDescent:
    """Plain guidance step: :math:`z_{t-1} = z'_{t-1} - \\rho\\, g` (P2L Eq. 14 / Alg. 4, LDPS Eq. 20)."""

    def init(self, z):
        return ()

    def direction(self, g, state):
        return g, state


@register_component
@dataclasses.dataclass(frozen=True)
class AdamHistory:
    """Adam-like history update of LDIR (Eqs. 21-24), used by P2L's Alg. 5.

    .. math::
        m_t = \\beta_1 m_{t+1} + (1-\\beta_1) g,\\quad
        v_t = \\beta_2 v_{t+1} + (1-\\beta_2) g\\odot g,\\quad
        z_{t-1} = z'_{t-1} - \\rho\\, \\hat m_t / (\\sqrt{\\hat v_t} + \\epsilon)

    with Adam's bias correction :math:`\\hat m_t, \\hat v_t` (``optax.scale_by_adam``; the
    paper fixes the default betas). Element-wise, so samples stay independent.
    """

    b1: float = 0.9
    b2: float = 0.999
    eps: float = 1e-8

    def _tx(self):
        return optax.scale_by_adam(b1=self.b1, b2=self.b2, eps=self.eps)

    def init(self, z):
        return self._tx().init(z)

    def direction(self, g, state):
        return self._tx().update(g, state)


@dataclasses.dataclass(frozen=True)
class SelectUpdate:
    """One of several latent updates per sample (a batch mixing configurations, :mod:`~diffprior.solvers.mixing`).

    .. math::
        d_n = u_{k_n}(g)_n

    Every option's direction is computed from the whole batch's gradient and its state
    advanced (each is element-wise, so a sample's own option sees exactly what it would see
    alone); sample :math:`n` takes option :math:`k_n` (``which``, ``(N,)``).

    Attributes:
        options: the updates, e.g. ``(GradientDescent(), AdamHistory())``.
    """

    options: tuple

    def init(self, z):
        return tuple(o.init(z) for o in self.options)

    def direction(self, g, state, which):
        out, new = g, []
        for k, (option, s) in enumerate(zip(self.options, state)):
            d, s = option.direction(g, s)
            new.append(s)
            out = jnp.where(bcast(which == k, g), d, out)
        return out, tuple(new)


# ----------------------------------------------------------------------------- regularisers
@register_component
@dataclasses.dataclass(frozen=True)
class FixedPointRegularizer:
    """GML-DPS (Eq. 25): :math:`\\gamma\\,\\|\\hat z_0 - \\mathcal{E}(\\mathcal{D}(\\hat z_0))\\|`,
    pulling :math:`\\hat z_0` towards a fixed point of decode-then-encode."""

    weight: float = 0.1
    needs_adjoint = False

    def __call__(self, prior, fwd: Forward, y, z0, x, loss: Loss):
        return self.weight * penalty(safe_norm(z0 - prior.encode(x)), loss)


GLUING_PROJECTORS = ("pinv", "adjoint")


def glue(fwd: Forward, y, x, projector: str = "pinv", cg_iters: int = 5):
    """The "gluing" of PSLD: keep what the measurement fixes, take the rest from ``x``.

    ``projector="pinv"`` (the default) is the orthogonal projection of ``x`` onto the
    measurement-consistent set :math:`\\{v: Av = y\\}`,

    .. math::
        \\operatorname{glue}(x) = A^+ y + (I - A^+ A)\\,x = x + \\delta,\\qquad
        \\delta = A^+ (y - Ax),

    where :math:`\\delta` comes from ``cg_iters`` iterations of conjugate gradient on the normal
    equations :math:`A^T A\\,\\delta = A^T (y - Ax)` started from :math:`\\delta = 0` (per
    sample). From zero, CG stays in the range of :math:`A^T` and so tends to the minimum-norm
    solution, :math:`A^+ (y - Ax)`; when :math:`A` has full row rank this is
    :math:`A^T (AA^T)^{-1}(y - Ax)`. The normal equations (rather than CG on :math:`AA^T`) also
    cover a measurement outside the range of :math:`A`, such as the noise that falls on the
    unobserved pixels of a simulated inpainting measurement: then :math:`A\\,\\operatorname{glue}(x)`
    is :math:`y`'s projection onto that range. The result is exact after one iteration whenever
    :math:`A^T A` is a multiple of a projection: inpainting masks (:math:`A^T A = M`) and
    average pooling (:math:`A^T A = P/f^2` with :math:`P` the projection onto block-constant
    images), so there :math:`A\\,\\operatorname{glue}(x) = y` to float precision. For a blur
    :math:`A^T A` is a convolution with the kernel's autocorrelation, whose small eigenvalues
    (high frequencies) make :math:`A^+` ill-conditioned: a few iterations give an early-stopped,
    regularised pseudo-inverse (CG fits the well-conditioned frequencies first), and more
    iterations fit the noise of :math:`y` in the weak ones.

    ``projector="adjoint"`` is PSLD's formula taken literally,
    :math:`A^T y + (I - A^T A)\\,x`. It equals the projection only when :math:`AA^T = I`
    (masks); for 4x average pooling (:math:`AA^T = I/16`) it moves :math:`Ax` only 1/16 of the
    way to :math:`y`. Kept for comparison with earlier results, not as a projection.
    """
    if projector == "adjoint":
        return fwd.adj(y) + x - fwd.gram(x)
    delta = batched_cg(fwd.gram, fwd.adj(y - fwd(x)), jnp.zeros_like(x), cg_iters)
    return x + delta


def _check_gluing(obj) -> None:
    if obj.projector not in GLUING_PROJECTORS:
        raise ValueError(f"{type(obj).__name__}.projector must be one of {GLUING_PROJECTORS}, got {obj.projector!r}")
    if obj.cg_iters < 1:
        raise ValueError(f"{type(obj).__name__}.cg_iters must be >= 1, got {obj.cg_iters}")


@register_component
@dataclasses.dataclass(frozen=True)
class GluingRegularizer:
    """PSLD (Eq. 26): :math:`\\gamma\\,\\|\\hat z_0 - \\mathcal{E}(\\operatorname{glue}(\\mathcal{D}(\\hat z_0)))\\|`.

    :math:`\\operatorname{glue}(x) = A^+ y + (I - A^+ A)\\,x` is the orthogonal projection onto
    :math:`\\{x: Ax = y\\}` (:func:`glue`; PSLD writes :math:`A^T` for :math:`A^+`, which
    agree when :math:`AA^T = I`). ``projector="adjoint"`` takes :math:`A^T` literally.

    Attributes:
        weight: :math:`\\gamma`.
        projector: ``"pinv"`` (projection, default) or ``"adjoint"`` (see :func:`glue`).
        cg_iters: CG iterations on the normal equations for ``"pinv"`` (one is exact for masks and
            average pooling; for blur see :func:`glue`).
    """

    weight: float = 0.1
    projector: str = "pinv"
    cg_iters: int = 5
    needs_adjoint = True

    def __post_init__(self):
        _check_gluing(self)

    def __call__(self, prior, fwd: Forward, y, z0, x, loss: Loss):
        glued = glue(fwd, y, x, self.projector, self.cg_iters)
        return self.weight * penalty(safe_norm(z0 - prior.encode(glued)), loss)


# ----------------------------------------------------------------------------- projections
@register_component
@dataclasses.dataclass(frozen=True)
class ProximalProjection:
    """P2L's projection onto the encoder's range (Eq. 16), every ``every`` steps.

    .. math::
        \\hat x = \\arg\\min_x \\|y - A x\\|_2^2 + \\lambda \\|x - \\mathcal{D}(\\hat z_0)\\|_2^2,
        \\qquad \\hat z_0 \\leftarrow \\mathcal{E}(\\hat x),

    i.e. :math:`(A^T A + \\lambda I)\\hat x = A^T y + \\lambda\\,\\mathcal{D}(\\hat z_0)`, solved by
    ``cg_iters`` iterations of conjugate gradient per sample (warm start
    :math:`\\mathcal{D}(\\hat z_0)`) with the operator's exact adjoint.

    Attributes:
        weight: :math:`\\lambda` (the same in ``[0, 1]`` and ``[-1, 1]`` units). Its effect
            depends on the operator's scale: on a component of :math:`A` with gain :math:`s`
            the step moves :math:`A\\hat x` a fraction :math:`s^2/(s^2 + \\lambda)` of the way
            to :math:`y`, so for 4x average pooling (:math:`\\|A\\|^2 = 1/16`) :math:`\\lambda = 1`
            moves it about 6 %, and for a normalised blur or a mask (:math:`\\|A\\|^2 = 1`) half.
        every: projection period :math:`\\gamma`; steps are counted from the end, so the last
            reverse step always projects.
        cg_iters: CG iterations (the paper says "a few"; 5 as in its DDS baseline; for the
            bundled prior 1, 5 and 20 tie on SR with average pooling, where one is exact).
        relative: read ``weight`` relative to the operator's scale,
            :math:`\\lambda = w\\,\\|A\\|^2`, with :math:`\\|A\\|^2` the largest eigenvalue of
            :math:`A^T A` estimated per sample by ``norm_iters`` power iterations at each
            projection. Then one ``weight`` means the same pull for pooling, blur and masks.
            The presets give absolute values (``relative=False``) and state the relative ones.
        norm_iters: power iterations for :math:`\\|A\\|^2` when ``relative``.
    """

    weight: float = 1.0
    every: int = 1
    cg_iters: int = 5
    relative: bool = False
    norm_iters: int = 20
    needs_adjoint = True

    def __post_init__(self):
        if self.weight <= 0 or self.every < 1 or self.cg_iters < 1 or self.norm_iters < 1:
            raise ValueError(f"ProximalProjection needs weight > 0, every >= 1, cg_iters >= 1, norm_iters >= 1; "
                             f"got {self}")

    def penalty_weight(self, fwd: Forward, x, weight=None):
        """:math:`\\lambda` per sample, shape ``(N,)`` (``x``: images of the batch's shape;
        ``weight``: per-sample values ``(N,)`` replacing :attr:`weight`)."""
        n = x.shape[0]
        w = jnp.full((n,), self.weight, x.dtype) if weight is None else jnp.asarray(weight, x.dtype)
        if not self.relative:
            return w
        return w * operator_norm_sq(fwd, x, self.norm_iters)

    def image(self, fwd: Forward, y, x, abar=None, weight=None):
        """Return :math:`\\hat x` of Eq. 16 for the decoded estimate ``x = D(z0)`` (``abar`` unused;
        ``weight``: per-sample :math:`\\lambda_n`, ``(N,)``, replacing :attr:`weight`)."""
        return proximal_image(fwd, y, x, self.penalty_weight(fwd, x, weight), self.cg_iters)


def proximal_image(fwd: Forward, y, x, weight, cg_iters: int):
    """:math:`\\arg\\min_v \\|y - Av\\|_2^2 + \\lambda_n \\|v - x_n\\|_2^2` per sample, by CG.

    Solves :math:`(A^T A + \\lambda_n I)\\,v = A^T y + \\lambda_n x_n` with ``cg_iters`` iterations
    of :func:`~diffprior.solvers.common.batched_cg` warm-started at :math:`x` (the operator's
    exact adjoint; the shared solve of :class:`ProximalProjection`, DDS and DiffPIR), in the
    correction form :math:`v = x + \\delta`, :math:`(A^T A + \\lambda_n I)\\,\\delta = A^T(y - Ax)`
    from :math:`\\delta = 0` (the same iterates in exact arithmetic). The correction form keeps
    the right-hand side in the range of :math:`A^T`: forming :math:`A^T y + \\lambda x` in float32
    rounds in every direction, and a rounding error in the null space of :math:`A` is divided by
    :math:`\\lambda` in the solution, which matters when :math:`\\lambda` is tiny (DiffPIR's first
    steps). For masks and average pooling the correction then never leaves the range of
    :math:`A^T` (their adjoints give exact zeros and exact block-constant images).

    The minimiser is the same in ``[0, 1]`` and ``[-1, 1]`` image units (both terms scale by 4
    under :math:`v \\mapsto 2v - 1` for a linear :math:`A`), and so are the CG iterates mapped
    by :math:`v \\mapsto 2v - 1`: CG on a system and on a positive multiple of it coincide.

    Args:
        fwd: the forward model (a ``scico.linop.LinearOperator``).
        y: measurement ``(N, ...)``; x: images ``(N, H, W, C)`` (the warm start).
        weight: :math:`\\lambda_n`, per sample ``(N,)``.
        cg_iters: CG iterations.
    """
    lam = bcast(weight, x)
    delta = batched_cg(lambda v: fwd.gram(v) + lam * v, fwd.adj(y - fwd(x)), jnp.zeros_like(x), cg_iters)
    return x + delta


def operator_norm_sq(fwd: Forward, x, iters: int = 20):
    """:math:`\\|A_n\\|^2`, the largest eigenvalue of :math:`A_n^T A_n`, per sample ``(N,)``, by
    ``iters`` power iterations (a lower bound, tight once the iteration has converged). The
    start is the constant image plus a fixed pseudo-random perturbation: the constant image
    is the top eigenvector of average pooling and of normalised non-negative blurs, and the
    perturbation keeps the iteration going for operators that annihilate constants."""
    v = 1.0 + 0.1 * jax.random.normal(jax.random.PRNGKey(0), x.shape[1:], x.dtype)
    v = jnp.broadcast_to(v / jnp.linalg.norm(v), x.shape)

    def body(_, v):
        w = fwd.gram(v)
        return w / bcast(jnp.maximum(jnp.sqrt(batch_dot(w, w)), 1e-30), w)

    v = lax.fori_loop(0, iters, body, v)
    return batch_dot(v, fwd.gram(v))


@register_component
@dataclasses.dataclass(frozen=True)
class GluingProjection:
    """Project with the PSLD gluing, :math:`\\hat x = A^+ y + (I - A^+ A)\\,\\mathcal{D}(\\hat z_0)`,
    instead of Eq. 16 (the ablation of P2L Table 5), every ``every`` steps.

    :math:`\\hat x` is the orthogonal projection of the decoded estimate onto
    :math:`\\{x: Ax = y\\}` (:func:`glue`): Eq. 16's limit :math:`\\lambda \\to 0`, where the
    proximal step keeps a pull towards :math:`\\mathcal{D}(\\hat z_0)`.

    Attributes:
        every: projection period, as :class:`ProximalProjection`.
        projector, cg_iters: as :class:`GluingRegularizer`.
    """

    every: int = 1
    projector: str = "pinv"
    cg_iters: int = 5
    needs_adjoint = True

    def __post_init__(self):
        if self.every < 1:
            raise ValueError(f"GluingProjection needs every >= 1, got {self.every}")
        _check_gluing(self)

    def image(self, fwd: Forward, y, x, abar=None):
        return glue(fwd, y, x, self.projector, self.cg_iters)


@register_component
@dataclasses.dataclass(frozen=True)
class NoiseLevelProjection:
    """DiffPIR's data step (Zhu et al. 2023, Eq. 13 and Alg. 1), at every reverse step.

    .. math::
        \\hat x = \\arg\\min_x \\|y - A x\\|_2^2 + \\rho_t \\|x - \\mathcal{D}(\\hat z_0)\\|_2^2,
        \\qquad \\rho_t = \\frac{\\lambda\\,\\sigma_n^2}{\\bar\\sigma_t^2},
        \\qquad \\bar\\sigma_t = \\frac{\\sqrt{1-\\bar\\alpha_t}}{\\sqrt{\\bar\\alpha_t}},

    then :math:`\\hat z_0 \\leftarrow \\mathcal{E}(\\hat x)`: the proximal problem of
    :class:`ProximalProjection`, solved by the same CG (:func:`proximal_image`), with a weight
    that grows as the noise level :math:`\\bar\\sigma_t` of the diffusion falls: at high noise
    the measurement dominates, near the end the denoised estimate does.

    **Units (the factor 2).** :math:`\\bar\\sigma_t` is a noise level of the diffusion space,
    ``[-1, 1]`` for a pixel prior; ``noise_sigma`` is the measurement noise in the ``[0, 1]``
    units of our images (the project's 0.005 is the papers' 0.01 on ``[-1, 1]``). The
    reference implementation of DiffPIR computes :math:`\\rho_t` with its ``[0, 1]`` noise level
    over the ``[-1, 1]`` :math:`\\bar\\sigma_t`, and its :math:`\\lambda` (7 by default) was
    tuned that way; we do the same, so that :math:`\\lambda` keeps its published meaning:

    .. math::
        \\rho_t = \\lambda\\,\\frac{\\sigma_{[0,1]}^2}{\\bar\\sigma_t^2}
        = \\frac{\\lambda}{4}\\,\\frac{\\sigma_{[-1,1]}^2}{\\bar\\sigma_t^2},
        \\qquad \\sigma_{[-1,1]} = 2\\,\\sigma_{[0,1]}.

    In consistent units the weight is :math:`\\lambda/4` (1.75 for :math:`\\lambda = 7`);
    :math:`\\lambda = 4` makes the data step the exact conditional posterior mean
    :math:`E[x_0 \\mid z_t, y]` under a flat prior, whose :math:`x_0 \\mid z_t` has variance
    :math:`\\bar\\sigma_t^2` (tested in ``tests/test_pixel_solvers.py``). The minimiser itself
    does not depend on the image units (:func:`proximal_image`).

    The reference implementation solves the problem in closed form (FFT for circular blur and
    super-resolution, a division for masks); we use conjugate gradients with the operator's
    exact adjoint, which covers every linear operator, is exact after one iteration for masks
    and average pooling (the first residual, :math:`A^T(y - A\\hat x)`, lies in one eigenspace of
    :math:`A^T A + \\rho_t I`), and approaches the closed form on blur with more iterations.
    At high noise :math:`\\rho_t` is tiny (about :math:`10^{-8}` at the first steps of a
    1000-step DDPM schedule with :math:`\\sigma_n = 0.005`) and the step nearly the projection
    onto :math:`\\{x: Ax = y\\}`; the correction form of :func:`proximal_image` keeps float32
    rounding out of the null space of masks and pooling, but for a general :math:`A` (a dense
    matrix, the weak frequencies of a blur) rounding there is amplified by up to
    :math:`1/\\rho_t`, as in any float32 solve of this system.

    Attributes:
        weight: :math:`\\lambda` (in the reference implementation's convention above).
        noise_sigma: :math:`\\sigma_n`, the measurement noise std in ``[0, 1]`` units (>= 0;
            0 makes the step the orthogonal projection onto :math:`\\{x: Ax = y\\}` as far as
            CG gets).
        cg_iters: CG iterations.
    """

    weight: float = 7.0
    noise_sigma: float = 0.005
    cg_iters: int = 20
    needs_adjoint = True
    every = 1  # DiffPIR's data step runs at every reverse step

    def __post_init__(self):
        if not self.weight > 0 or not self.noise_sigma >= 0 or self.cg_iters < 1:
            raise ValueError(f"NoiseLevelProjection needs weight > 0, noise_sigma >= 0, cg_iters >= 1; got {self}")

    def penalty_weight(self, x, abar):
        """:math:`\\rho_t` per sample, ``(N,)``, at :math:`\\bar\\alpha_t` = ``abar`` (a scalar)."""
        rho = self.weight * self.noise_sigma ** 2 * abar / (1.0 - abar)
        return jnp.full((x.shape[0],), rho, x.dtype)

    def image(self, fwd: Forward, y, x, abar):
        """Return :math:`\\hat x` for the decoded estimate ``x`` at :math:`\\bar\\alpha_t` = ``abar``."""
        return proximal_image(fwd, y, x, self.penalty_weight(x, abar), self.cg_iters)
