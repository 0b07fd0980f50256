"""Pooling specs: which token vector(s) of which hidden layer(s) become a text's feature.

A pooling is named by a short string, safe as a file-name part:

    cls                  the last layer's vector at position 0 ([CLS])
    mean                 the last layer's vectors averaged over the real (unmasked) tokens
    mean_last4_avg       the mean pooling of each of the last 4 layers, averaged
    cls_last4_concat     the [CLS] vectors of the last 4 layers, concatenated (4 x hidden_size)
    mean_layer3          one layer by index: 0 is the embedding output, n_layers the last
    cls_layers2.4.6_avg  several layers by index, averaged (or _concat)

Parsing is torch-free (the config validates names with it, classify reads them);
``probekit.stages.extract.engine.pooling.pool_batch`` computes every requested pooling from one
forward pass.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

TOKENS = ("cls", "mean")
AGGS = ("avg", "concat")
_NAME = re.compile(r"^(cls|mean)(?:_(?:last(\d+)|layer(\d+)|layers(\d+(?:\.\d+)+))(?:_(avg|concat))?)?$")
GRAMMAR = "cls, mean, <cls|mean>_last<K>_<avg|concat>, <cls|mean>_layer<I>, <cls|mean>_layers<I>.<J>..._<avg|concat>"


@dataclass(frozen=True)
class PoolingSpec:
    """One parsed pooling name.

    ``layers`` holds hidden-state indices: negative ones count from the last layer
    (-1 is the last), non-negative ones from the embedding output (0).
    """

    name: str
    token: str
    layers: tuple[int, ...]
    agg: str | None

    def resolve(self, n_layers: int) -> tuple[int, ...]:
        """Absolute indices into ``hidden_states`` (length n_layers + 1)."""
        out = tuple(i if i >= 0 else n_layers + 1 + i for i in self.layers)
        bad = [i for i in out if not 0 <= i <= n_layers]
        if bad:
            raise ValueError(f"pooling {self.name!r}: layer index {bad[0]} is outside 0..{n_layers} "
                             f"(the model has {n_layers} layers; 0 is the embedding output)")
        return out

    def hidden_size(self, hidden: int) -> int:
        return hidden * len(self.layers) if self.agg == "concat" else hidden

    def describe(self, n_layers: int, hidden: int) -> dict:
        """What the manifest records about this pooling."""
        return {"hidden_size": self.hidden_size(hidden), "token": self.token,
                "layers": list(self.resolve(n_layers)), "agg": self.agg}


def parse_pooling(name: str) -> PoolingSpec:
    """Parse a pooling name; ValueError (naming the grammar) when it is not one."""
    m = _NAME.match(name) if isinstance(name, str) else None
    if not m:
        raise ValueError(f"pooling {name!r} is not one of: {GRAMMAR}")
    token, last, one, many, agg = m.groups()
    if last is not None:
        k = int(last)
        if k < 1:
            raise ValueError(f"pooling {name!r}: last<K> needs K >= 1")
        layers = tuple(range(-k, 0))
    elif one is not None:
        layers = (int(one),)
    elif many is not None:
        layers = tuple(int(i) for i in many.split("."))
        if len(set(layers)) != len(layers):
            raise ValueError(f"pooling {name!r} names a layer twice")
    else:
        layers = (-1,)
    if len(layers) > 1 and agg is None:
        raise ValueError(f"pooling {name!r} pools {len(layers)} layers: end it with _avg or _concat")
    if len(layers) == 1 and agg is not None:
        raise ValueError(f"pooling {name!r} pools one layer: drop the _{agg}")
    return PoolingSpec(name=name, token=token, layers=layers, agg=agg)


def needs_hidden_states(specs: list[PoolingSpec]) -> bool:
    """Whether any pooling reads a layer other than the last (so the model must return them all)."""
    return any(s.layers != (-1,) for s in specs)
