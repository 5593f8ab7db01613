"""Total-variation regularised reconstruction by ADMM (scico), a classic baseline."""

from __future__ import annotations

from .classic import ClassicADMM


class TVADMM(ClassicADMM):
    """Isotropic-TV regularised least squares solved by ADMM.

    .. math::
        \\hat x = \\arg\\min_x \\tfrac12\\|y - A x\\|_2^2 + \\lambda \\|\\nabla x\\|_{2,1}

    with :math:`\\nabla` the forward differences along the two image axes (per channel) and
    the :math:`\\ell_{2,1}` norm grouping the two directions of each pixel. The ADMM splitting is
    :math:`C = \\nabla`, :math:`g = \\lambda\\|\\cdot\\|_{2,1}` and the x-update is solved by CG
    on :math:`(A^TA + \\rho\\nabla^T\\nabla)x = A^Ty + \\rho\\nabla^T(v - u)` (:cite:`boyd-2011-distributed`).

    Args:
        lmbda: TV weight :math:`\\lambda` (for ``[0, 1]`` images).
        **kwargs: see :class:`~diffprior.solvers.classic.ClassicADMM`.
    """

    def __init__(self, *, lmbda: float = 0.02, **kwargs):
        if lmbda < 0:
            raise ValueError(f"lmbda must be >= 0, got {lmbda}")
        self.lmbda = float(lmbda)
        super().__init__(**kwargs)

    def _regularizer(self):
        from scico import functional, linop

        C = linop.FiniteDifference(input_shape=tuple(self.A.input_shape), axes=(0, 1), append=0)
        return self.lmbda * functional.L21Norm(l2_axis=0), C
