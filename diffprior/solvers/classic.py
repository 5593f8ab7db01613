"""Shared shell of the classic (non-diffusion) baselines built on ``scico.optimize.ADMM``.

The face matches the diffusion solvers: keyword-only construction with the measurement, the
operator and a configuration dataclass (presets by task, JSON round-trip and dotted
overrides as for every solver: :class:`~diffprior.solvers.config.SolverConfig`), ``solve()``
returning ``(N, H, W, C)`` images in ``[0, 1]``, ``history()`` and a scico iteration table.
Samples are solved one at a time (each is its own ADMM problem, so a batch never couples
them). The operator acts on one image ``(H, W, C)``, or is a per-sample operator of
:mod:`operators` on ``(N, H, W, C)`` whose sample ``i`` is :meth:`~operators.ImageOperator.sample`.
"""

from __future__ import annotations

import dataclasses
import time

import jax.numpy as jnp
import numpy as np

from .config import SolverConfig


@dataclasses.dataclass(frozen=True, kw_only=True)
class ADMMConfig(SolverConfig):
    """Settings every ADMM baseline has.

    Attributes:
        rho: ADMM penalty parameter :math:`\\rho`.
        maxiter: ADMM iterations (part of the preset: the searched weights were chosen at a
            fixed iteration count).
        cg_tol, cg_maxiter: inner conjugate-gradient settings of the x-update.
    """

    rho: float = 1.0
    maxiter: int = 100
    cg_tol: float = 1e-4
    cg_maxiter: int = 25

    def __post_init__(self):
        if not self.rho > 0 or int(self.maxiter) < 1 or not self.cg_tol > 0 or int(self.cg_maxiter) < 1:
            raise ValueError(f"need rho > 0, maxiter >= 1, cg_tol > 0, cg_maxiter >= 1; got rho={self.rho}, "
                             f"maxiter={self.maxiter}, cg_tol={self.cg_tol}, cg_maxiter={self.cg_maxiter}")


class ClassicADMM:
    """ADMM baseline shell; subclasses provide the regulariser (:meth:`_regularizer`).

    Args:
        y: measurement ``A.output_shape`` or ``(N, *A.output_shape)`` (one image operator),
            or ``A.output_shape`` of a batched operator.
        A: ``scico.linop.LinearOperator`` on one image ``(H, W, C)``, or a batched operator of
            :mod:`operators` (per-sample kernels or masks).
        config: the solver's configuration dataclass (default: its defaults).
        itstat_options: passed to ``scico.optimize.ADMM``.
        **fields: configuration fields given directly (``rho=``, ``maxiter=``, ``lmbda=``, ...);
            they replace those of ``config``.
    """

    config_class: type = ADMMConfig
    uses_prior = False

    def __init__(self, *, y, A, config=None, itstat_options: dict | None = None, **fields):
        from scico.linop import LinearOperator

        name = type(self).__name__
        config = self.config_class() if config is None else config
        if not isinstance(config, self.config_class):
            raise TypeError(f"{name} config must be a {self.config_class.__name__}, got {type(config).__name__}")
        known = {f.name for f in dataclasses.fields(config)}
        unknown = set(fields) - known
        if unknown:
            raise TypeError(f"{name} got unexpected keyword argument(s) {', '.join(map(repr, sorted(unknown)))}; "
                            f"configuration fields: {', '.join(sorted(known))}")
        config = dataclasses.replace(config, **fields)
        if not isinstance(A, LinearOperator):
            raise TypeError(f"{name} needs a scico LinearOperator, got {type(A).__name__}")
        y = np.asarray(y, np.float32)
        if len(A.input_shape) == 4:
            if not hasattr(A, "sample"):
                raise ValueError(f"{name} needs a single-image operator on (H, W, C) or a batched operator of "
                                 f"the operators package; got input_shape {A.input_shape}")
            if y.shape != tuple(A.output_shape):
                raise ValueError(f"y has shape {y.shape}, but A acts on the batch {A.input_shape} and its "
                                 f"output_shape is {tuple(A.output_shape)}")
            self._operators = [A.sample(i) for i in range(A.input_shape[0])]
        elif len(A.input_shape) == 3:
            if y.shape == tuple(A.output_shape):
                y = y[None]
            if y.shape[1:] != tuple(A.output_shape):
                raise ValueError(f"y has shape {y.shape}, expected {tuple(A.output_shape)} or "
                                 f"(N, *{tuple(A.output_shape)})")
            self._operators = [A] * y.shape[0]
        else:
            raise ValueError(f"{name} needs an operator on (H, W, C) or (N, H, W, C), got input_shape {A.input_shape}")
        if y.shape[0] == 0:
            raise ValueError(f"{name}: y holds no samples (shape {y.shape})")
        if not np.all(np.isfinite(y)):
            raise ValueError("y contains NaN or Inf")
        self.y, self.A, self.config = y, A, config
        self.n = int(y.shape[0])
        self.itstat_options = itstat_options or {"display": False}
        self._history: list = []
        self.elapsed = 0.0
        self.x = None

    @property
    def rho(self) -> float:
        return float(self.config.rho)

    @property
    def maxiter(self) -> int:
        return int(self.config.maxiter)

    def _regularizer(self, A):
        """Return ``(g, C)``: the regulariser functional and its linear operator for ``A``'s images."""
        raise NotImplementedError  # pragma: no cover - abstract

    def solve(self, callback=None) -> np.ndarray:
        """Solve each sample; returns ``(N, H, W, C)`` float32 clipped to ``[0, 1]``."""
        from scico import loss
        from scico.optimize import ADMM
        from scico.optimize.admm import LinearSubproblemSolver

        cfg = self.config
        out = []
        t0 = time.time()
        self._history = []
        for i, (yi, Ai) in enumerate(zip(self.y, self._operators)):
            g, C = self._regularizer(Ai)
            f = loss.SquaredL2Loss(y=jnp.asarray(yi), A=Ai)
            x0 = jnp.clip(Ai.adj(jnp.asarray(yi)), 0.0, 1.0)
            solver = ADMM(f=f, g_list=[g], C_list=[C], rho_list=[float(cfg.rho)], x0=x0, maxiter=int(cfg.maxiter),
                          subproblem_solver=LinearSubproblemSolver(
                              cg_kwargs={"tol": float(cfg.cg_tol), "maxiter": int(cfg.cg_maxiter)}),
                          itstat_options=self.itstat_options)
            x = solver.solve()
            out.append(np.clip(np.asarray(x), 0.0, 1.0))
            self._history.append(solver.itstat_object.history(transpose=True))
            if callback is not None:
                callback(self, i)
        self.elapsed = time.time() - t0
        self.x = np.stack(out).astype(np.float32)
        return self.x

    def history(self) -> list:
        """scico iteration statistics of each sample (a list of named tuples of arrays)."""
        return self._history
