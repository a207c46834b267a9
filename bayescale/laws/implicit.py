"""Laws defined implicitly: the root of :math:`w = f\\,(b - w)^{a}` in log space.

Alabdulmohsin et al. 2022's estimator M4,
:math:`(y - \\varepsilon_\\infty) / (\\varepsilon_0 - y)^{\\alpha} = \\beta x^{-c}`, gives the
excess :math:`w = y - \\varepsilon_\\infty` only implicitly: :math:`w = f\\,(b - w)^\\alpha`
with :math:`f = \\beta x^{-c}`, :math:`b = \\varepsilon_0 - \\varepsilon_\\infty`.  The
formula function ``saturating_root(f, b, a)`` (:mod:`bayescale.laws.formula`) is that
:math:`w \\in (0, b)`, computed here.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

__all__ = ["NEWTON_STEPS", "log_saturating_root"]

#: Newton steps of the solve (each exact where the root's function is linear).
NEWTON_STEPS = 40


def log_saturating_root(log_f, log_b, a):
    """:math:`\\log w` of the root :math:`w \\in (0, b)` of :math:`w = f\\,(b - w)^{a}`,
    :math:`a \\ge 0`, from :math:`\\log f`, :math:`\\log b` (broadcast together).

    Solved in :math:`u = \\operatorname{logit}(w/b)`, where
    :math:`g(u) = \\log\\sigma(u) - a\\log\\sigma(-u) + (1 - a)\\log b - \\log f` is increasing
    (:math:`g' = \\sigma(-u) + a\\,\\sigma(u) > 0`) and concave for :math:`a < 1`, convex for
    :math:`a > 1` (:math:`g'' = (a - 1)\\sigma(u)\\sigma(-u)`), linear for :math:`a = 1`.
    Newton's method started on the side of the root where it cannot overshoot (below it
    for :math:`a \\le 1`, above it for :math:`a > 1`; the bounds :math:`g' \\ge 1/2` for
    :math:`u < 0` and :math:`g' \\ge a/2` for :math:`u > 0` place the start) converges
    monotonically; :data:`NEWTON_STEPS` steps are taken without gradient, then one more
    with it, which gives the exact first derivatives of the root (implicit function
    theorem).  Nothing raises: non-finite inputs give NaN.
    """
    log_f, log_b, a = jnp.broadcast_arrays(log_f, log_b, a)
    log_sig = jax.nn.log_sigmoid

    def g(u, log_f, log_b, a):
        return log_sig(u) - a * log_sig(-u) + (1 - a) * log_b - log_f

    def step(u, log_f, log_b, a):
        slope = jax.nn.sigmoid(-u) + a * jax.nn.sigmoid(u)
        return u - g(u, log_f, log_b, a) / slope

    sf, sb, sa = (jax.lax.stop_gradient(v) for v in (log_f, log_b, a))
    g0 = g(jnp.zeros_like(sf), sf, sb, sa)
    below = jnp.minimum(0.0, -2.0 * g0)  # g <= 0 here
    above = jnp.maximum(0.0, -2.0 * g0 / jnp.maximum(sa, 1e-6))  # g >= 0 here
    u0 = jnp.where(sa <= 1.0, below, above)
    u = jax.lax.fori_loop(0, NEWTON_STEPS, lambda _, u: step(u, sf, sb, sa), u0)
    u = step(jax.lax.stop_gradient(u), log_f, log_b, a)
    return log_b + log_sig(u)
