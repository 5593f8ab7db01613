"""Plug-and-play ADMM with scico's DnCNN denoiser, a classic learned baseline."""

from __future__ import annotations

import dataclasses

from .classic import ADMMConfig, ClassicADMM


@dataclasses.dataclass(frozen=True, kw_only=True)
class PnPADMMConfig(ADMMConfig):
    """PnP-ADMM settings: scico's DnCNN ``variant`` (``"6M"``, ``"17M"``, ``"17H"``, ...: depth
    and noise level) and those of :class:`~diffprior.solvers.classic.ADMMConfig`."""

    variant: str = "17M"


class PnPADMM(ClassicADMM):
    """PnP-ADMM (Venkatakrishnan et al. 2013) with a DnCNN denoiser as the prior's proximal map.

    .. math::
        x^{k+1} = \\arg\\min_x \\tfrac12\\|y - Ax\\|_2^2 + \\tfrac\\rho2\\|x - v^k + u^k\\|_2^2,\\quad
        v^{k+1} = \\mathrm{DnCNN}(x^{k+1} + u^k),\\quad u^{k+1} = u^k + x^{k+1} - v^{k+1}.

    scico's DnCNN weights are trained on grayscale images, so the denoiser is applied to each
    colour channel separately (scico's ``DnCNN`` functional does this for a trailing channel
    axis of size 3).

    Settings: :class:`PnPADMMConfig`; arguments: :class:`~diffprior.solvers.classic.ClassicADMM`.
    """

    config_class = PnPADMMConfig

    def _regularizer(self, A):
        from scico import functional, linop

        return functional.DnCNN(self.config.variant), linop.Identity(tuple(A.input_shape))
