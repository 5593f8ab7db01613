"""What a prior that wraps another passes through unchanged (shared by the tiled and adapted priors)."""

from __future__ import annotations


class PriorWrapper:
    """Mixin for a prior pytree with an ``inner`` prior: the schedule, the metadata, ``embed``
    and any other attribute (``scaling_factor``, ``downsample_factor``, ...) are the inner
    prior's. Subclasses override what they change."""

    @property
    def schedule(self):
        return self.inner.schedule

    @property
    def metadata(self):
        return self.inner.metadata

    def embed(self, prompts):
        return self.inner.embed(prompts)

    def eps_and_x0(self, z, t, emb):
        return self.inner.eps_and_x0(z, t, emb)

    def latent_shape(self, image_shape):
        return self.inner.latent_shape(image_shape)

    def __getattr__(self, name):
        if name.startswith("__") or name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)


__all__ = ["PriorWrapper"]
