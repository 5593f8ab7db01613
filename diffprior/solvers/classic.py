"""Shared shell of the classic (non-diffusion) baselines built on ``scico.optimize.ADMM``.

The face matches the diffusion solvers: keyword-only construction with the measurement and the
operator, ``solve()`` returning ``(N, H, W, C)`` images in ``[0, 1]``, ``history()`` and a
scico iteration table. Samples are solved one at a time (each is its own ADMM problem, so a
batch never couples them); the operator is the single-image forward model ``A`` on
``(H, W, C)``.
"""

from __future__ import annotations

import time

import jax.numpy as jnp
import numpy as np


class ClassicADMM:
    """ADMM baseline shell; subclasses provide the regulariser (:meth:`_regularizer`).

    Args:
        y: measurement ``A.output_shape`` or ``(N, *A.output_shape)``.
        A: ``scico.linop.LinearOperator`` on one image ``(H, W, C)``.
        rho: ADMM penalty parameter.
        maxiter: ADMM iterations.
        cg_tol, cg_maxiter: inner conjugate-gradient settings of the x-update.
        itstat_options: passed to ``scico.optimize.ADMM``.
    """

    def __init__(self, *, y, A, rho: float = 1.0, maxiter: int = 100, cg_tol: float = 1e-4,
                 cg_maxiter: int = 25, itstat_options: dict | None = None):
        from scico.linop import LinearOperator

        if not isinstance(A, LinearOperator):
            raise TypeError(f"{type(self).__name__} needs a scico LinearOperator, got {type(A).__name__}")
        if len(A.input_shape) != 3:
            raise ValueError(f"{type(self).__name__} needs a single-image operator on (H, W, C), "
                             f"got input_shape {A.input_shape}")
        y = np.asarray(y, np.float32)
        if y.shape == tuple(A.output_shape):
            y = y[None]
        if y.shape[1:] != tuple(A.output_shape):
            raise ValueError(f"y has shape {y.shape}, expected {tuple(A.output_shape)} or "
                             f"(N, *{tuple(A.output_shape)})")
        if not np.all(np.isfinite(y)):
            raise ValueError("y contains NaN or Inf")
        if rho <= 0 or maxiter < 1:
            raise ValueError(f"need rho > 0 and maxiter >= 1, got rho={rho}, maxiter={maxiter}")
        self.y, self.A, self.rho, self.maxiter = y, A, float(rho), int(maxiter)
        self.cg_kwargs = {"tol": cg_tol, "maxiter": cg_maxiter}
        self.itstat_options = itstat_options or {"display": False}
        self._history: list = []
        self.elapsed = 0.0

    def _regularizer(self):
        """Return ``(g, C)``: the regulariser functional and its linear operator."""
        raise NotImplementedError  # pragma: no cover - abstract

    def solve(self, callback=None) -> np.ndarray:
        """Solve each sample; returns ``(N, H, W, C)`` float32 clipped to ``[0, 1]``."""
        from scico import loss
        from scico.optimize import ADMM
        from scico.optimize.admm import LinearSubproblemSolver

        g, C = self._regularizer()
        out = []
        t0 = time.time()
        self._history = []
        for i, yi in enumerate(self.y):
            f = loss.SquaredL2Loss(y=jnp.asarray(yi), A=self.A)
            x0 = jnp.clip(self.A.adj(jnp.asarray(yi)), 0.0, 1.0)
            solver = ADMM(f=f, g_list=[g], C_list=[C], rho_list=[self.rho], x0=x0, maxiter=self.maxiter,
                          subproblem_solver=LinearSubproblemSolver(cg_kwargs=self.cg_kwargs),
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
