"""The PSLD gluing as an orthogonal projection onto {x: Ax = y} (diffprior.solvers.consistency.glue)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffprior.solvers import GluingProjection, GluingRegularizer
from diffprior.solvers.common import make_forward
from diffprior.solvers.consistency import glue
from diffprior.tasks import get_task

SHAPE = (16, 16, 3)


def _problem(task: str, n: int = 3, seed: int = 0):
    kx, ky, kn = jax.random.split(jax.random.PRNGKey(seed), 3)
    A = get_task(task).build_batch(SHAPE, kx, n)
    x_true = jax.random.uniform(ky, (n, *SHAPE))
    clean = A(x_true) if len(A.input_shape) == 4 else jax.vmap(A)(x_true)  # per-sample or shared operator
    y = clean + 0.01 * jax.random.normal(kn, clean.shape)
    fwd, y, _ = make_forward(A, y)
    x = jax.random.uniform(jax.random.fold_in(ky, 1), (n, *SHAPE))  # an estimate far from consistent
    return fwd, y, x


@pytest.mark.parametrize("task", ["sr4-avg", "inpaint-random", "inpaint-freeform"])
def test_pinv_gluing_fits_the_measurement_exactly(task):
    """For masks (AA^T = M) and average pooling (AA^T = I/16) one CG iteration is exact.

    The simulated noise also falls on the unobserved pixels of an inpainting measurement, which
    no image explains: there A(glued) is y's projection onto range(A), M y.
    """
    fwd, y, x = _problem(task)
    target = y if task.startswith("sr") else y * fwd.A.mask[:, :, :, None]
    assert float(jnp.abs(target - fwd(x)).max()) > 0.1  # far from consistent before gluing
    for iters in (1, 5):
        g = glue(fwd, y, x, "pinv", iters)
        np.testing.assert_allclose(np.asarray(fwd(g)), np.asarray(target), atol=2e-6)
    # ... and it is the orthogonal projection: idempotent, and the change lies in range(A^T)
    g = glue(fwd, y, x, "pinv", 1)
    np.testing.assert_allclose(np.asarray(glue(fwd, y, g, "pinv", 1)), np.asarray(g), atol=2e-6)
    d = g - x
    # d = A^T u, so (I - A^+ A) d = 0: re-gluing x + d from y' = A(x + d) leaves it unchanged
    y2 = fwd(x + d)
    np.testing.assert_allclose(np.asarray(glue(fwd, y2, x, "pinv", 1)), np.asarray(x + d), atol=2e-6)


def test_adjoint_gluing_falls_short_on_pooling():
    """PSLD's literal A^T y + (I - A^T A) x moves A x only 1/16 of the way to y for 4x pooling."""
    fwd, y, x = _problem("sr4-avg")
    g = glue(fwd, y, x, "adjoint")
    before = np.asarray(y - fwd(x))
    after = np.asarray(y - fwd(g))
    np.testing.assert_allclose(after, before * (1 - 1 / 16), rtol=1e-4, atol=1e-6)
    # for masks the two agree (AA^T = M)
    fwd, y, x = _problem("inpaint-random")
    np.testing.assert_allclose(np.asarray(glue(fwd, y, x, "adjoint")), np.asarray(glue(fwd, y, x, "pinv", 1)), atol=2e-6)


def test_pinv_gluing_on_blur_reduces_the_residual_with_iterations():
    fwd, y, x = _problem("gauss-deblur")
    res = [float(jnp.linalg.norm(y - fwd(glue(fwd, y, x, "pinv", k)))) for k in (1, 5, 20)]
    start = float(jnp.linalg.norm(y - fwd(x)))
    assert start > res[0] > res[1] > res[2], (start, res)


def test_gluing_options_are_checked():
    with pytest.raises(ValueError, match="projector"):
        GluingRegularizer(projector="transpose")
    with pytest.raises(ValueError, match="cg_iters"):
        GluingProjection(cg_iters=0)


@pytest.mark.parametrize("task,norm_sq", [("sr4-avg", 1 / 16), ("inpaint-random", 1.0)])
def test_relative_projection_weight_scales_with_the_operator_norm(task, norm_sq):
    """``ProximalProjection(relative=True)``: lambda = w ||A||^2, so the same w pulls alike."""
    from diffprior.solvers import ProximalProjection
    from diffprior.solvers.consistency import operator_norm_sq

    fwd, y, x = _problem(task)
    np.testing.assert_allclose(np.asarray(operator_norm_sq(fwd, x)), norm_sq, rtol=1e-5)
    rel = ProximalProjection(weight=0.5, relative=True, cg_iters=10).image(fwd, y, x)
    ab = ProximalProjection(weight=0.5 * norm_sq, cg_iters=10).image(fwd, y, x)
    np.testing.assert_allclose(np.asarray(rel), np.asarray(ab), atol=1e-5)
    # the pull: on a component with gain s the step closes s^2 / (s^2 + lambda) of the gap,
    # which with lambda = w ||A||^2 is 1 / (1 + w) whatever the operator's scale
    gap0 = np.asarray(y - fwd(x)) if task.startswith("sr") else np.asarray((y - fwd(x)) * fwd.A.mask[:, :, :, None])
    gap1 = np.asarray(y - fwd(rel)) if task.startswith("sr") else np.asarray((y - fwd(rel)) * fwd.A.mask[:, :, :, None])
    np.testing.assert_allclose(gap1, gap0 * 0.5 / 1.5, atol=1e-5)


@pytest.mark.parametrize("task", ["sr4-avg", "inpaint-random"])
def test_gluing_derivative_is_the_complementary_projector(task):
    """PSLD differentiates the gluing: d glue / dx = I - A^+ A (symmetric), finite after CG has
    converged (5 iterations where 1 is exact: the step lengths' own derivative would be NaN)."""
    fwd, y, x = _problem(task)
    v = jax.random.normal(jax.random.PRNGKey(5), x.shape)
    _, vjp = jax.vjp(lambda x_: glue(fwd, y, x_, "pinv", 5), x)
    (got,) = vjp(v)
    assert bool(jnp.all(jnp.isfinite(got)))
    want = v - glue(fwd, fwd(v), jnp.zeros_like(v), "pinv", 1)  # (I - A^+ A) v
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), atol=1e-5)
