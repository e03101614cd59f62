"""The models the DMVAE evaluation takes all offer what mmcl.dmvae.protocol says it needs."""

from __future__ import annotations

import inspect

import pytest

from mmcl.dmvae.baselines import BaselineModule, JointPosterior
from mmcl.dmvae.protocol import ContentModel, EvaluatedModel
from mmcl.dmvae.stage1 import ContentModule
from mmcl.dmvae.stage2 import SpecificModule


def methods(protocol: type) -> dict[str, list[str]]:
    return {
        name: list(inspect.signature(fn).parameters)
        for name, fn in vars(protocol).items()
        if inspect.isfunction(fn) and not name.startswith("_")
    }


@pytest.mark.parametrize(
    "protocol, implementations",
    [(EvaluatedModel, [SpecificModule, BaselineModule]), (ContentModel, [ContentModule, JointPosterior])],
)
def test_every_model_has_the_protocols_methods_with_its_parameters(protocol, implementations):
    wanted = methods(protocol)
    assert wanted, "the protocol lists no methods"
    for cls in implementations:
        for name, params in wanted.items():
            assert callable(getattr(cls, name, None)), f"{cls.__name__} lacks {name}()"
            got = list(inspect.signature(getattr(cls, name)).parameters)
            assert got[: len(params)] == params, f"{cls.__name__}.{name}{tuple(got)} differs from {params}"
