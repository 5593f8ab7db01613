"""Total-variation regularised reconstruction by ADMM (scico), a classic baseline."""

from __future__ import annotations

import dataclasses

from .classic import ADMMConfig, ClassicADMM


@dataclasses.dataclass(frozen=True, kw_only=True)
class TVADMMConfig(ADMMConfig):
    """TV-ADMM settings: the TV weight :math:`\\lambda` (for ``[0, 1]`` images) and those of
    :class:`~diffprior.solvers.classic.ADMMConfig`."""

    lmbda: float = 0.02

    def __post_init__(self):
        super().__post_init__()
        if not self.lmbda >= 0:
            raise ValueError(f"lmbda must be >= 0, got {self.lmbda}")


class TVADMM(ClassicADMM):
    """Isotropic-TV regularised least squares solved by ADMM.

    .. math::
        \\hat x = \\arg\\min_x \\tfrac12\\|y - A x\\|_2^2 + \\lambda \\|\\nabla x\\|_{2,1}

    with :math:`\\nabla` the forward differences along the two image axes (per channel) and
    the :math:`\\ell_{2,1}` norm grouping the two directions of each pixel. The ADMM splitting is
    :math:`C = \\nabla`, :math:`g = \\lambda\\|\\cdot\\|_{2,1}` and the x-update is solved by CG
    on :math:`(A^TA + \\rho\\nabla^T\\nabla)x = A^Ty + \\rho\\nabla^T(v - u)` (:cite:`boyd-2011-distributed`).

    Settings: :class:`TVADMMConfig`; arguments: :class:`~diffprior.solvers.classic.ClassicADMM`.
    """

    config_class = TVADMMConfig

    def _regularizer(self, A):
        from scico import functional, linop

        C = linop.FiniteDifference(input_shape=tuple(A.input_shape), axes=(0, 1), append=0)
        return self.config.lmbda * functional.L21Norm(l2_axis=0), C
