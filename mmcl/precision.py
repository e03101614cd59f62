"""The training precision the hardware runs fast, for every command that trains.

bf16 autocast is a speed-up only where the hardware does bf16 arithmetic natively: on a CPU
without it (e.g. AMD Zen 2, Intel before Cooper Lake) every bf16 op is emulated and a step of
the demo's ConvNets takes many times as long as in fp32 (docs/benchmarks.md). So a trainer whose
``precision`` is left unset (``null`` in the YAML, no ``--trainer.precision``) gets:

* on a CPU: ``bf16-mixed`` where the CPU reports native bf16 (x86 ``avx512_bf16`` or
  ``amx_bf16``, Arm ``bf16``) and no ``ATEN_CPU_CAPABILITY`` / ``ONEDNN_MAX_CPU_ISA`` keeps
  torch's kernels below it, otherwise ``32-true``;
* on CUDA: ``bf16-mixed`` where ``torch.cuda.is_bf16_supported()``, otherwise ``32-true``
  (fp16 with loss scaling was never validated on these losses);
* anything else (MPS, ...): ``32-true``.

An explicit precision always wins. The choice and its reason are logged, so a timing can be
read against the CPU it ran on.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import torch

from mmcl.machine import cpu_info

# /proc/cpuinfo flags that mean the CPU computes in bf16 itself (not by emulation)
BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16", "bf16")
# what fill_precision logs, and what reads it back (the demo's budget watch)
LOG_LINE = "[{where}] precision {precision}: {reason}"
LOGGED = re.compile(r"\] precision (\S+):")


def native_bf16_flags(flags: set[str]) -> list[str]:
    return [f for f in BF16_CPU_FLAGS if f in flags]


def isa_cap(env=None) -> str | None:
    """The environment variable that keeps torch's kernels off the CPU's bf16 instructions, if
    one does: ``ATEN_CPU_CAPABILITY`` below avx512, or ``ONEDNN_MAX_CPU_ISA`` below
    ``AVX512_CORE_BF16`` (with either, a bf16-capable CPU emulates bf16 like one without)."""
    env = os.environ if env is None else env
    aten = env.get("ATEN_CPU_CAPABILITY", "").lower()
    if aten in ("default", "avx2", "zvector", "vsx"):
        return f"ATEN_CPU_CAPABILITY={aten}"
    onednn = env.get("ONEDNN_MAX_CPU_ISA", "").upper()
    if onednn and onednn not in ("ALL", "DEFAULT") and not any(k in onednn for k in ("BF16", "AMX", "AVX10")):
        return f"ONEDNN_MAX_CPU_ISA={onednn}"
    return None


def resolve_accelerator(accelerator) -> str:
    """``cpu`` / ``cuda`` / ``other`` for a Lightning ``accelerator`` (a name or an instance)."""
    name = accelerator.lower() if isinstance(accelerator, str) else type(accelerator).__name__.lower()
    if accelerator is None or name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if "cpu" in name:
        return "cpu"
    if name in ("gpu", "cuda") or "cuda" in name:
        return "cuda"
    return "other"


def choose_precision(
    accelerator="auto", requested=None, cpuinfo: str | Path = "/proc/cpuinfo"
) -> tuple[str, str]:
    """``(precision, reason)``: ``requested`` where given, else the rule of the module docstring."""
    if requested is not None:
        return str(requested), "as configured"
    device = resolve_accelerator(accelerator)
    if device == "cpu":
        model, flags = cpu_info(cpuinfo)
        native = native_bf16_flags(flags)
        cap = isa_cap()
        if native and cap:
            return "32-true", (
                f"the CPU ({model}) has native bf16 ({', '.join(native)}) but {cap} keeps torch "
                "off it, so bf16 autocast would be emulated and many times slower"
            )
        if native:
            return "bf16-mixed", f"the CPU ({model}) has native bf16 ({', '.join(native)})"
        return "32-true", (
            f"the CPU ({model}) has no native bf16 (none of {', '.join(BF16_CPU_FLAGS)}), "
            "where bf16 autocast is emulated and many times slower"
        )
    if device == "cuda":
        if torch.cuda.is_available() and torch.cuda.is_bf16_supported():
            return "bf16-mixed", f"the GPU ({torch.cuda.get_device_name()}) supports bf16"
        return "32-true", "the GPU does not support bf16"
    return "32-true", f"accelerator {accelerator!r}: bf16 autocast not assumed fast"


def fill_precision(trainer_kwargs: dict, where: str, log=print) -> dict:
    """``trainer_kwargs`` with ``precision`` chosen for the hardware when it is unset; logs one line."""
    precision, reason = choose_precision(
        trainer_kwargs.get("accelerator", "auto"), trainer_kwargs.get("precision")
    )
    log(LOG_LINE.format(where=where, precision=precision, reason=reason))
    return {**trainer_kwargs, "precision": precision}


def rank_zero_print(line: str) -> None:
    """``print`` in the first process only (DDP ranks all parse the same config)."""
    if os.environ.get("LOCAL_RANK", "0") == "0" and os.environ.get("NODE_RANK", "0") == "0":
        print(line, flush=True)


def step_seconds(
    model: torch.nn.Module, inputs: torch.Tensor, rounds: int = 3, steps: int = 4
) -> dict[str, float]:
    """Seconds per training step (forward, mean-square loss, backward, AdamW) of ``model`` on the
    CPU in ``32-true`` and ``bf16-mixed``: the best of ``rounds`` rounds of ``steps`` steps per
    precision, the two alternating (so a load change biases both alike), after a warm-up step."""
    optimiser = torch.optim.AdamW(model.parameters(), lr=1e-3)

    def per_step(bf16: bool, n: int) -> float:
        t0 = time.perf_counter()
        for _ in range(n):
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                loss = model(inputs).float().square().mean()
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
        return (time.perf_counter() - t0) / n

    for bf16 in (False, True):
        per_step(bf16, 1)
    best = {"32-true": float("inf"), "bf16-mixed": float("inf")}
    for _ in range(rounds):
        for name in best:
            best[name] = min(best[name], per_step(name == "bf16-mixed", steps))
    return best
