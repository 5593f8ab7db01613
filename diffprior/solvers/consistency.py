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
  :class:`ProximalProjection` (P2L Eq. 16) and :class:`GluingProjection` (the "gluing"
  alternative of P2L Table 5).

The prompt-tuning step (P2L Alg. 3) lives in :mod:`diffprior.solvers.prompt`.
"""

from __future__ import annotations

import dataclasses

import optax

from .common import Forward, Loss, batched_cg, penalty, safe_norm
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


@register_component
@dataclasses.dataclass(frozen=True)
class GluingRegularizer:
    """PSLD (Eq. 26): :math:`\\gamma\\,\\|\\hat z_0 - \\mathcal{E}(A^T y + (I - A^T A)\\,\\mathcal{D}(\\hat z_0))\\|`.

    The "gluing" is an orthogonal projection onto the measurement subspace only when
    :math:`AA^T = I` (inpainting masks; average pooling up to a constant): PSLD assumes so.
    """

    weight: float = 0.1
    needs_adjoint = True

    def __call__(self, prior, fwd: Forward, y, z0, x, loss: Loss):
        glued = fwd.adj(y) + x - fwd.gram(x)
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
        weight: :math:`\\lambda` (scale-free: the same in ``[0, 1]`` and ``[-1, 1]`` units).
        every: projection period :math:`\\gamma`; steps are counted from the end, so the last
            reverse step always projects.
        cg_iters: CG iterations (the paper says "a few"; 5 as in its DDS baseline; for the
            bundled prior 1, 5 and 20 tie on SR with average pooling, where one is exact).
    """

    weight: float = 1.0
    every: int = 1
    cg_iters: int = 5
    needs_adjoint = True

    def __post_init__(self):
        if self.weight <= 0 or self.every < 1 or self.cg_iters < 1:
            raise ValueError(f"ProximalProjection needs weight > 0, every >= 1, cg_iters >= 1; got {self}")

    def image(self, fwd: Forward, y, x):
        """Return :math:`\\hat x` of Eq. 16 for the decoded estimate ``x = D(z0)``."""
        lam = self.weight
        return batched_cg(lambda v: fwd.gram(v) + lam * v, fwd.adj(y) + lam * x, x, self.cg_iters)


@register_component
@dataclasses.dataclass(frozen=True)
class GluingProjection:
    """Project with the PSLD gluing :math:`\\hat x = A^T y + (I - A^T A)\\,\\mathcal{D}(\\hat z_0)`
    instead of Eq. 16 (the ablation of P2L Table 5), every ``every`` steps."""

    every: int = 1
    needs_adjoint = True

    def __post_init__(self):
        if self.every < 1:
            raise ValueError(f"GluingProjection needs every >= 1, got {self.every}")

    def image(self, fwd: Forward, y, x):
        return fwd.adj(y) + x - fwd.gram(x)
